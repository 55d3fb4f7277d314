"""Forms of the delivery pages: they validate and shape; marketing.actions saves."""

from __future__ import annotations

from django import forms

from accounts.forms import StyledForm
from audiences.models import Customer, Item

from .models import Ad, Campaign, Channel, DeliveryPlan, FrequencyCap, Placement, PlanRule


def _when(label: str, help_text: str = "") -> forms.DateTimeField:
    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    return forms.DateTimeField(label=label, required=False, widget=widget, help_text=help_text)


class ChannelForm(StyledForm, forms.ModelForm):
    class Meta:
        model = Channel
        fields = ["name", "kind", "cost_model", "unit_cost"]
        help_texts = {"unit_cost": "The price of one unit of the cost model: per 1,000 impressions for CPM, per click for CPC …"}


class PlacementForm(StyledForm, forms.ModelForm):
    class Meta:
        model = Placement
        fields = ["slug", "name", "channel", "slots"]
        help_texts = {"slug": "What the app sends as <code>placement</code> when it asks for ads, e.g. <code>home-banner</code>."}


class CampaignForm(StyledForm, forms.ModelForm):
    """Everything but the status: that changes only along the lifecycle (marketing.actions.move_campaign)."""

    starts_at = _when("Flight starts", "Empty: as soon as it is launched.")
    ends_at = _when("Flight ends", "Empty: until it is ended.")

    class Meta:
        model = Campaign
        fields = ["name", "goal", "total_budget", "daily_budget", "target_cpa", "starts_at", "ends_at",
                  "explore_impressions", "explore_days", "attribution_minutes", "control_share", "uplift_targeting"]
        help_texts = {"total_budget": "Empty: no total limit.", "daily_budget": "Empty: no daily limit; spend is paced evenly across the day."}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["attribution_minutes"].required = False  # empty: the default of a day
        self.fields["control_share"].required = False  # empty: no control group

    def clean_control_share(self) -> float:
        value = self.cleaned_data.get("control_share")
        return value if value is not None else 0.0

    def clean_attribution_minutes(self) -> int:
        value = self.cleaned_data.get("attribution_minutes")
        return value if value is not None else Campaign._meta.get_field("attribution_minutes").default


class AdForm(StyledForm, forms.ModelForm):
    promoted_item = forms.CharField(
        label="Promoted item", required=False, max_length=64,
        help_text="The catalogue id of a track, album, artist or concert the ad promotes (optional).")
    dynamic_items = forms.CharField(
        label="Dynamic item set", required=False, max_length=4000,
        help_text="Catalogue ids, separated by commas: each customer is shown their best recommended item of these "
                  "(their recommendations rank them; without one, the promoted item or the first of the set).")
    image_url = forms.URLField(label="Image URL", required=False, assume_scheme="https")
    landing_url = forms.URLField(label="Landing URL", required=False, assume_scheme="https",
                                 help_text="Where a click takes the customer.")

    class Meta:
        model = Ad
        fields = ["name", "status", "priority", "placements", "title", "body", "image_url", "landing_url", "payload"]  # + promoted_item, dynamic_items
        widgets = {"placements": forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"}), "body": forms.Textarea(attrs={"rows": 3}),
                   "payload": forms.Textarea(attrs={"rows": 3, "class": "mono"})}
        help_texts = {"placements": "Where this ad may be shown."}
        labels = {"payload": "Payload (JSON)"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["placements"].queryset = Placement.objects.select_related("channel")
        self.fields["placements"].required = False  # clean_placements says why one is needed
        self.fields["placements"].label_from_instance = lambda p: f"{p.name} · {p.slug}"
        if self.instance.promoted_item_id and not self.is_bound:
            self.initial["promoted_item"] = self.instance.promoted_item.external_id
        if self.instance.dynamic_items and not self.is_bound:
            found = dict(Item.objects.filter(pk__in=self.instance.dynamic_items).values_list("pk", "external_id"))
            self.initial["dynamic_items"] = ", ".join(found[i] for i in self.instance.dynamic_items if i in found)

    def clean_placements(self):
        placements = self.cleaned_data["placements"]
        if not placements:
            raise forms.ValidationError("Choose at least one placement: an ad is shown only where it is placed."
                                        if Placement.objects.exists() else
                                        "There are no placements yet: add one under Delivery set-up first.")
        return placements

    def clean_promoted_item(self):
        external_id = self.cleaned_data["promoted_item"].strip()
        if not external_id:
            return None
        item = Item.objects.filter(external_id=external_id).first()
        if item is None:
            raise forms.ValidationError(f"No catalogue item has the id “{external_id}”.")
        return item

    def clean_dynamic_items(self) -> list[int]:
        """External ids → item ids in the order given; unknown ids are named."""
        wanted = [x.strip() for x in self.cleaned_data["dynamic_items"].split(",") if x.strip()]
        found = dict(Item.objects.filter(external_id__in=wanted).values_list("external_id", "pk"))
        unknown = [x for x in wanted if x not in found]
        if unknown:
            raise forms.ValidationError(f"No catalogue item has the id{'s' if len(unknown) > 1 else ''} "
                                        + ", ".join(f"“{x}”" for x in unknown[:10]) + ".")
        return list(dict.fromkeys(found[x] for x in wanted))

    def clean_payload(self):
        payload = self.cleaned_data["payload"]
        if payload is None:
            return {}
        if not isinstance(payload, dict):
            raise forms.ValidationError('Give a JSON object, e.g. {"deeplink": "app://release/42"}.')
        return payload


class CapForm(StyledForm, forms.ModelForm):
    """A frequency cap; FrequencyCap.clean names the target a level needs and the one it must not have."""

    class Meta:
        model = FrequencyCap
        fields = ["level", "ad", "campaign", "placement", "channel", "max_count", "window", "min_gap_seconds"]
        labels = {"ad": "Ad (for an ad cap)", "campaign": "Campaign (for a campaign cap)",
                  "placement": "Placement (for a placement cap)", "channel": "Channel (for a channel cap)",
                  "max_count": "At most", "window": "Window", "min_gap_seconds": "Minimum gap (seconds)"}
        help_texts = {"max_count": "Ads served per customer in the window; empty: only the gap counts."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["ad"].queryset = Ad.objects.select_related("campaign")


class PlanForm(StyledForm, forms.ModelForm):
    class Meta:
        model = DeliveryPlan
        fields = ["rest", "rest_ads", "epsilon", "fit_threshold"]
        widgets = {"rest_ads": forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"})}
        labels = {"rest": "Everyone else gets", "rest_ads": "Ads for everyone else", "epsilon": "Keep exploring (ε)",
                  "fit_threshold": "Fit check (minimum predicted response)"}
        help_texts = {"rest_ads": "None ticked: every servable ad of this placement that no rule names."}

    def __init__(self, *args, placement: Placement, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["rest_ads"].queryset = ads_of(placement)

    def clean(self):
        data = super().clean()
        if data.get("rest") == DeliveryPlan.Rest.NOTHING and data.get("rest_ads"):
            self.add_error("rest_ads", "Everyone else gets nothing: untick these ads, or choose priority or model.")
        return data


def ads_of(placement: Placement):
    return Ad.objects.filter(placements=placement).select_related("campaign").order_by("campaign__name", "name")


class RuleForm(StyledForm, forms.ModelForm):
    class Meta:
        model = PlanRule
        fields = ["audience", "mode", "ads"]
        widgets = {"ads": forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"})}
        labels = {"mode": "Gets"}

    def __init__(self, *args, placement: Placement, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["ads"].queryset = ads_of(placement)
        self.fields["ads"].help_text = ""

    def clean(self):
        data = super().clean()
        ads, mode = data.get("ads"), data.get("mode")
        if ads is not None and mode == PlanRule.Mode.ONE_AD and len(ads) != 1:
            self.add_error("ads", f"“One specified ad” needs exactly one ad ({len(ads)} ticked).")
        if ads is not None and mode == PlanRule.Mode.RANKED and len(ads) < 2:
            self.add_error("ads", "“Ads ranked by model” needs at least two ads to rank; for one, choose “One specified ad”.")
        return data


class BaseRuleFormSet(forms.BaseInlineFormSet):
    def add_fields(self, form, index):
        super().add_fields(form, index)
        form.fields["ORDER"].label = "Position"
        form.fields["ORDER"].widget.attrs.update({"class": "form-control form-control-sm", "style": "width: 5rem"})
        form.fields["DELETE"].label = "Remove this rule"
        form.fields["DELETE"].widget.attrs["class"] = "form-check-input"


RuleFormSet = forms.inlineformset_factory(DeliveryPlan, PlanRule, form=RuleForm, formset=BaseRuleFormSet, extra=0,
                                          can_order=True, can_delete=True)


class SimulateForm(StyledForm, forms.Form):
    customer = forms.CharField(label="Customer id", max_length=64,
                               widget=forms.TextInput(attrs={"list": "customer-options", "autocomplete": "off"}),
                               help_text="Their external id; type a few characters for suggestions.")
    placement = forms.ModelChoiceField(Placement.objects.all(), to_field_name="slug", empty_label="— choose —")

    def clean_customer(self):
        external_id = self.cleaned_data["customer"].strip()
        customer = Customer.objects.filter(external_id=external_id).first()
        if customer is None:
            raise forms.ValidationError(f"No customer has the id “{external_id}”.")
        return customer
