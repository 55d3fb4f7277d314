"""Forms of the budget pages: they validate and shape what marketing.mix and marketing.mix_data are called with."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone

from accounts.forms import StyledForm

from .mix import FIT_OPTIONS
from .models import BudgetScenario, Channel, MixDataset, MixModel


def _names(text: str) -> list[str] | None:
    """A comma list of column names; None when empty (mix_data then guesses)."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    return names or None


class UploadForm(StyledForm, forms.Form):
    file = forms.FileField(label="CSV file", help_text="Up to 10 MB; comma, semicolon or tab separated.")
    name = forms.CharField(label="Name", max_length=120, required=False, help_text="Empty: the file's name.")
    outcome = forms.CharField(label="Outcome column", max_length=100, required=False,
                              help_text="Empty: a column called revenue, sales, conversions, outcome or kpi.")
    outcome_kind = forms.ChoiceField(label="The outcome is", required=False,
                                     choices=[("", "Guess"), ("revenue", "Revenue"), ("count", "A count")],
                                     help_text="Empty: revenue when its name says so.")
    channels = forms.CharField(label="Spend columns", max_length=2000, required=False,
                               help_text="Comma separated, e.g. <code>tv_S, search_S</code>. Empty: names ending in "
                                         "<code>_S</code> or holding “spend”.")
    controls = forms.CharField(label="Control columns", max_length=2000, required=False,
                               help_text="Optional, comma separated: what moves the outcome besides spend (price, "
                                         "competitor activity, holidays).")
    date_column = forms.CharField(label="Date column", max_length=100, required=False,
                                  help_text="Empty: a column called date, week, month or day.")

    def options(self) -> dict:
        """The keyword arguments of mix_data.import_csv."""
        d = self.cleaned_data
        return {"name": d["name"].strip(), "outcome": d["outcome"].strip() or None, "outcome_kind": d["outcome_kind"] or None,
                "channels": _names(d["channels"]), "controls": _names(d["controls"]),
                "date_column": d["date_column"].strip() or None}


PLATFORM_OUTCOMES = [("conversions", "Conversions"), ("revenue", "Revenue"), ("streams", "Streams"), ("clicks", "Clicks")]


class PlatformForm(StyledForm, forms.Form):
    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"}))
    frequency = forms.ChoiceField(label="Periods", choices=[("week", "Weekly"), ("day", "Daily")],
                                  help_text="Weeks run Monday to Sunday; a part week at either end is left out.")
    outcome = forms.ChoiceField(label="Outcome", choices=PLATFORM_OUTCOMES)

    def __init__(self, *args, **kwargs) -> None:
        # The upload form on the same page has an `outcome` too: distinct ids keep each label on its own input.
        kwargs.setdefault("auto_id", "id_platform_%s")
        super().__init__(*args, **kwargs)
        today = timezone.localdate()
        self.fields["start"].initial = today - timedelta(weeks=52)
        self.fields["end"].initial = today - timedelta(days=1)


class FitForm(StyledForm, forms.Form):
    adstock = forms.ChoiceField(label="Carryover (adstock)", initial="geometric", choices=[
        ("geometric", "Geometric: the effect fades by a constant share each period"),
        ("weibull", "Weibull: the effect may peak later and fade slowly")])
    # Kept as the text posted: mix.check_fit_options reads raw values (and an int 0 would read as "not given").
    seasonality = forms.ChoiceField(label="Seasonality", initial="2", choices=[
        ("0", "None"), ("1", "Order 1: one wave a year"), ("2", "Order 2"), ("3", "Order 3: the most detail")])
    bootstrap = forms.ChoiceField(label="Bootstrap refits", initial="40",
                                  choices=[(str(n), "None: no intervals" if n == 0 else f"{n}") for n in FIT_OPTIONS["bootstrap"]],
                                  help_text="More refits give steadier 90 % intervals and take longer.")
    threshold = forms.FloatField(label="Plateau threshold", required=False, min_value=0.0,
                                 help_text="The marginal return per unit of spend under which a channel counts as "
                                           "plateaued. Empty: 1.0 for revenue (the next unit earns back only itself), "
                                           "half the average return for counts. The model page can change it.")

    def clean_threshold(self) -> float | None:
        value = self.cleaned_data.get("threshold")
        if value is not None and value <= 0:
            raise forms.ValidationError("The threshold must be above 0.")
        return value

    def options(self) -> dict:
        """What mix.check_fit_options reads."""
        d = self.cleaned_data
        return {"adstock": d["adstock"], "seasonality": d["seasonality"], "bootstrap": d["bootstrap"],
                "threshold": "" if d["threshold"] is None else d["threshold"]}


class ChannelMapForm(forms.Form):
    """Which platform channel each spend column is: applying a scenario sets the budgets of that channel's campaigns."""

    def __init__(self, dataset: MixDataset, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.columns = list(dataset.channels)
        channels = Channel.objects.order_by("name")
        for i, column in enumerate(self.columns):
            self.fields[f"channel_{i}"] = forms.ModelChoiceField(
                label=column, queryset=channels, required=False, empty_label="Not linked",
                initial=dataset.channel_map.get(column), widget=forms.Select(attrs={"class": "form-select form-select-sm"}))

    def rows(self) -> list[tuple[str, forms.BoundField]]:
        return [(column, self[f"channel_{i}"]) for i, column in enumerate(self.columns)]

    def mapping(self) -> dict[str, int]:
        return {column: self.cleaned_data[f"channel_{i}"].pk for i, column in enumerate(self.columns)
                if self.cleaned_data.get(f"channel_{i}")}


RELATIVE_DEFAULT = (70, 150)


class AllocatorForm(StyledForm, forms.Form):
    """A total per period, an objective and a low/high pair per channel, shaped for mix.save_scenario.

    The target is entered as people think of it — a minimum ROI in % for revenue, a highest CPA for
    counts — and handed to the allocator as it reads it (ROI as a fraction, CPA as is). An empty high
    bound means no upper limit; the allocator is given the total itself, which no channel can pass.
    """

    name = forms.CharField(label="Scenario name", max_length=120)
    total = forms.FloatField(label="Total budget per period", min_value=0.0)
    objective = forms.ChoiceField(label="Objective", choices=BudgetScenario.Objective.choices,
                                  initial=BudgetScenario.Objective.RESPONSE,
                                  widget=forms.RadioSelect(attrs={"class": "form-check-input"}))
    target = forms.FloatField(label="Target", required=False)
    bounds_mode = forms.ChoiceField(label="Bounds", choices=BudgetScenario.BoundsMode.choices,
                                    initial=BudgetScenario.BoundsMode.RELATIVE,
                                    widget=forms.RadioSelect(attrs={"class": "form-check-input"}))

    def __init__(self, model: MixModel, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        report = model.report
        self.revenue = report.get("outcome_kind", "revenue") == "revenue"
        self.current = dict(report.get("current") or {})
        self.channels = list(self.current)
        self.fields["total"].initial = round(sum(self.current.values()), 2)
        self.fields["name"].initial = f"Scenario {model.scenarios.count() + 1}"
        per = {"day": "day", "week": "week", "month": "month"}.get(model.dataset.frequency, "period")
        self.fields["bounds_mode"].choices = [(BudgetScenario.BoundsMode.RELATIVE, "% of the spend now"),
                                              (BudgetScenario.BoundsMode.ABSOLUTE, f"Amounts per {per}")]
        target = self.fields["target"]
        if self.revenue:
            target.label, target.help_text = "Minimum ROI (%)", "With a target efficiency: the media must earn at least this return, e.g. 20 for 20 %."
        else:
            target.label, target.help_text = "Highest CPA", "With a target efficiency: the most an outcome may cost."
            target.min_value = 0.0
        low, high = RELATIVE_DEFAULT
        for i, name in enumerate(self.channels):
            self.fields[f"low_{i}"] = forms.FloatField(label=f"{name}: low", required=False, min_value=0.0, initial=low,
                                                       widget=forms.NumberInput(attrs={"class": "form-control form-control-sm", "step": "any"}))
            self.fields[f"high_{i}"] = forms.FloatField(label=f"{name}: high", required=False, min_value=0.0, initial=high,
                                                        widget=forms.NumberInput(attrs={"class": "form-control form-control-sm", "step": "any"}))

    def rows(self) -> list[dict]:
        return [{"name": name, "current": f"{self.current[name]:,.2f}", "low": self[f"low_{i}"], "high": self[f"high_{i}"]}
                for i, name in enumerate(self.channels)]

    def clean(self) -> dict:
        d = super().clean()
        if d.get("objective") == BudgetScenario.Objective.EFFICIENCY and d.get("target") is None:
            self.add_error("target", "A target efficiency needs its target: the minimum ROI in %." if self.revenue
                           else "A target efficiency needs its target: the highest CPA.")
        if not self.revenue and d.get("target") is not None and d["target"] <= 0:
            self.add_error("target", "The highest CPA must be above 0.")
        for i, name in enumerate(self.channels):
            low, high = d.get(f"low_{i}"), d.get(f"high_{i}")
            if low is not None and high is not None and low > high:
                self.add_error(f"high_{i}", f"{name}: the low bound {low:,.2f} is above the high bound {high:,.2f}.")
        return d

    def scenario(self) -> dict:
        """The keyword arguments of mix.save_scenario (less the model and the user)."""
        d = self.cleaned_data
        relative = d["bounds_mode"] == BudgetScenario.BoundsMode.RELATIVE
        bounds = {}
        for i, name in enumerate(self.channels):
            low, high = d.get(f"low_{i}"), d.get(f"high_{i}")
            if high is None:  # no upper limit: a channel can take at most the whole total
                current = self.current[name]
                high = (100 * d["total"] / current if current > 0 else 0.0) if relative else d["total"]
                high = max(high, low or 0.0)
            bounds[name] = (low or 0.0, high)
        target = d.get("target") if d["objective"] == BudgetScenario.Objective.EFFICIENCY else None
        if target is not None and self.revenue:
            target = target / 100
        return {"name": d["name"].strip(), "total": d["total"], "objective": d["objective"], "target": target,
                "bounds_mode": d["bounds_mode"], "bounds": bounds}

