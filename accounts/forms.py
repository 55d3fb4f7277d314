from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password

from .models import ROLE_DESCRIPTIONS, ROLE_ORDER, SCOPES, ApiClient


class StyledForm:
    """Adds Bootstrap classes, and marks invalid fields so screen readers and eyes both see them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            widget = field.widget
            if isinstance(widget, (forms.CheckboxInput,)):
                css = "form-check-input"
            elif isinstance(widget, (forms.CheckboxSelectMultiple, forms.RadioSelect)):
                css = ""
            elif isinstance(widget, forms.Select):
                css = "form-select"
            else:
                css = "form-control"
            widget.attrs["class"] = (widget.attrs.get("class", "") + " " + css).strip()

    def full_clean(self):
        # Marked after cleaning: touching self.errors in __init__ would validate before
        # subclasses have added their fields.
        super().full_clean()
        for name in self.errors:
            if name in self.fields:
                widget = self.fields[name].widget
                widget.attrs["class"] = widget.attrs.get("class", "") + " is-invalid"
                widget.attrs["aria-invalid"] = "true"


ROLE_CHOICES = [(r.value, f"{r.label} — {ROLE_DESCRIPTIONS[r]}") for r in ROLE_ORDER]


class NewUserForm(StyledForm, forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=ROLE_CHOICES, widget=forms.RadioSelect)
    password = forms.CharField(widget=forms.PasswordInput, help_text="At least 8 characters, not too common.")

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(f"A user named '{username}' already exists.")
        return username

    def clean(self):
        data = super().clean()
        if data.get("password"):
            user = get_user_model()(username=data.get("username", ""), email=data.get("email", ""))
            try:
                validate_password(data["password"], user)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return data


class EditUserForm(StyledForm, forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES, widget=forms.RadioSelect)
    is_active = forms.BooleanField(required=False, label="Active (can log in)")

    def __init__(self, *args, two_factor: bool = False, locked: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if locked:  # only offered while failed sign-ins lock the account
            self.fields["unlock"] = forms.BooleanField(
                required=False, label="Lift the sign-in lock now",
                help_text="Too many failed sign-ins locked this account; otherwise it opens again after the cool-off.",
                widget=forms.CheckboxInput(attrs={"class": "form-check-input"}))
        if two_factor:  # only offered when the user has an authenticator: a lost phone
            self.fields["remove_two_factor"] = forms.BooleanField(
                required=False, label="Remove two-factor sign-in (a lost phone)",
                help_text="They sign in with the password only until they set up a new app entry.",
                widget=forms.CheckboxInput(attrs={"class": "form-check-input"}))


class ApiClientForm(StyledForm, forms.Form):
    name = forms.CharField(max_length=100, help_text="Who calls with this token, e.g. 'CRM nightly sync'.")
    scopes = forms.MultipleChoiceField(
        choices=[(k, f"{k} — {v}") for k, v in SCOPES.items()],
        widget=forms.CheckboxSelectMultiple,
        help_text="Grant only what the client needs.",
    )
    requests_per_minute = forms.IntegerField(
        label="Rate limit (requests per minute)", required=False, min_value=1,
        help_text="Over it the API answers 429 with Retry-After. Empty: the site default.")

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if ApiClient.objects.filter(name__iexact=name).exists():
            raise forms.ValidationError(f"An API client named '{name}' already exists.")
        return name


class CodeForm(StyledForm, forms.Form):
    """The six digits an authenticator app shows now."""

    code = forms.RegexField(regex=r"^\s*\d{6}\s*$", max_length=12, label="Code from your authenticator app",
                            error_messages={"invalid": "Enter the 6 digits your app shows."})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["code"].widget.attrs.update(inputmode="numeric", autocomplete="one-time-code", pattern=r"\d{6}",
                                                autofocus=True, placeholder="123456")

    def clean_code(self) -> str:
        return self.cleaned_data["code"].strip()
