from __future__ import annotations

import json

from django import forms
from django.conf import settings

from accounts.forms import StyledForm

from .imports import FIELDS
from .models import Audience, ImportKind, Lookalike, PersonaSettings
from .rules import RuleError, validate


class UploadForm(StyledForm, forms.Form):
    kind = forms.ChoiceField(choices=ImportKind.choices, label="What the file holds")
    file = forms.FileField(help_text="CSV (comma, semicolon, tab or pipe separated, with a header row) or Parquet.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.IMPORT_MAX_UPLOAD_MB
        if upload.size > limit * 1024 * 1024:
            raise forms.ValidationError(f"The file is {upload.size / 1e6:,.0f} MB; the limit is {limit:,} MB.")
        if upload.size == 0:
            raise forms.ValidationError("The file is empty.")
        return upload


class MappingForm(StyledForm, forms.Form):
    """One select per target field, listing the file's columns."""

    keep_extra = forms.BooleanField(required=False, initial=True, label="Keep unmapped columns as attributes")

    def __init__(self, *args, data_import, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [("", "— not in this file —")] + [(c, c) for c in data_import.columns]
        for f in FIELDS[data_import.kind]:
            self.fields[f.name] = forms.ChoiceField(
                choices=choices, required=False, label=f.label + (" *" if f.required else ""), help_text=f.help,
                initial=data_import.mapping.get(f.name, ""),
            )
            self.fields[f.name].widget.attrs["class"] = "form-select form-select-sm"
        self.order_fields([f.name for f in FIELDS[data_import.kind]] + ["keep_extra"])
        if data_import.kind == ImportKind.ACTIVITIES:
            del self.fields["keep_extra"]

    def mapping(self) -> dict[str, str]:
        return {k: v for k, v in self.cleaned_data.items() if k != "keep_extra" and v}


class PersonaSettingsForm(StyledForm, forms.ModelForm):
    class Meta:
        model = PersonaSettings
        fields = ["half_life_days", "loyal_revenue_share", "active_revenue_share", "top_n"]

    def clean_half_life_days(self):
        value = self.cleaned_data["half_life_days"]
        if not 0.5 <= value <= 730:
            raise forms.ValidationError("Use a half-life between 0.5 and 730 days.")
        return value

    def clean_top_n(self):
        value = self.cleaned_data["top_n"]
        if not 1 <= value <= 100:
            raise forms.ValidationError("Keep between 1 and 100 preferences per dimension.")
        return value

    def clean(self):
        data = super().clean()
        loyal, active = data.get("loyal_revenue_share"), data.get("active_revenue_share")
        for name in ("loyal_revenue_share", "active_revenue_share"):
            value = data.get(name)
            if value is not None and not 0 < value < 1:
                self.add_error(name, "Use a share between 0 and 1, e.g. 0.55 for 55 %.")
        if loyal is not None and active is not None and loyal + active >= 1:
            self.add_error("active_revenue_share", f"Loyal + active must stay under 1 (now {loyal + active:.2f}), so someone is casual.")
        return data


RULE_EXAMPLE = json.dumps({"all": [
    {"field": "age", "op": "between", "value": [18, 30]},
    {"field": "region", "op": "eq", "value": "south"},
    {"pref": "genres", "key": "hip-hop", "op": "gte", "value": 0.3},
    {"did": "play", "in_last_days": 7, "at_least": 3},
]}, indent=2)


class AudienceForm(StyledForm, forms.ModelForm):
    rule = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 14, "class": "mono", "spellcheck": "false"}),
        help_text="The rule as JSON; see the reference beside this form.",
    )

    class Meta:
        model = Audience
        fields = ["name", "description", "rule"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.initial["rule"] = json.dumps(self.instance.rule, indent=2)
        elif not self.is_bound:
            self.initial["rule"] = RULE_EXAMPLE

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if Audience.objects.filter(name__iexact=name).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(f"An audience named '{name}' already exists.")
        return name

    def clean_rule(self):
        return parse_rule(self.cleaned_data["rule"], audience_id=self.instance.pk)


def parse_rule(text: str, *, audience_id: int | None = None) -> dict:
    """JSON text to a validated rule, or a ValidationError naming the line or the path in the tree."""
    try:
        rule = json.loads(text)
    except ValueError as exc:
        raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
    try:
        validate(rule, Audience.rule_of, audience_id=audience_id)
    except RuleError as exc:
        raise forms.ValidationError(f"{exc.path}: {exc.reason}") from None
    return rule


class ListAudienceForm(StyledForm, forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    file = forms.FileField(help_text="CSV with customer ids in the first column (a header row is fine).")

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if Audience.objects.filter(name__iexact=name).exists():
            raise forms.ValidationError(f"An audience named '{name}' already exists.")
        return name


class LookalikeForm(StyledForm, forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    seed = forms.ModelChoiceField(
        queryset=Audience.objects.none(), label="Seed audience",
        error_messages={"invalid_choice": f"Choose an audience with at least {Lookalike.MIN_SEED} members at its last count."},
        help_text=f"The customers to find more of: any audience with at least {Lookalike.MIN_SEED} members. "
                  "Its members are never part of the lookalike.",
    )
    size_pct = forms.FloatField(
        label="Size (% of everyone outside the seed)", initial=5, min_value=Lookalike.MIN_PCT, max_value=Lookalike.MAX_PCT,
        help_text="You can change it after training, from the precision / lift curve, without retraining.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["seed"].queryset = Audience.objects.seedable()
        self.fields["seed"].label_from_instance = lambda a: f"{a.name} ({a.size or 0:,} members)"

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if Audience.objects.filter(name__iexact=name).exists():
            raise forms.ValidationError(f"An audience named '{name}' already exists.")
        return name


class LookalikeSizeForm(StyledForm, forms.Form):
    size_pct = forms.FloatField(label="Size (% of everyone outside the seed)", min_value=Lookalike.MIN_PCT, max_value=Lookalike.MAX_PCT)
