from __future__ import annotations

from django import forms
from django.conf import settings

from accounts.forms import StyledForm

from .imports import FIELDS
from .models import ImportKind, PersonaSettings


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
