"""The `infotext` field of txt2img / img2img requests (a1111-compat.md §3.5, §3.3 step 1).

The infotext is parsed like pasted generation parameters; every request field the client did not
send (pydantic's `model_fields_set`) is filled from it, and every infotext key that names a
setting whose value differs from the current one joins `override_settings` unless the client
already overrides that setting. Script arguments named by script infotext fields are not injected
yet (no scripts are installed).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from fastapi import HTTPException
from pydantic import BaseModel, ValidationError

from modules.app.options import coerce_value
from modules.engine.samplers import get_sampler_and_scheduler
from modules.processing.infotext import infotext_to_api_fields, parse_generation_parameters

if TYPE_CHECKING:
    from modules.app.options import Options
    from modules.processing.styles import StyleDatabase

log = logging.getLogger(__name__)

RequestModel = TypeVar("RequestModel", bound=BaseModel)


def infotext_request_fields(params: dict[str, Any]) -> dict[str, Any]:
    """Request fields an infotext gives. The sampler and scheduler are resolved together like
    A1111's paste fields do, so a legacy "Euler a Karras" becomes Euler a + Karras."""
    fields = infotext_to_api_fields(params)
    if params.get("Sampler"):
        sampler, scheduler = get_sampler_and_scheduler(str(params["Sampler"]),
                                                       params.get("Schedule type"))
        fields["sampler_name"], fields["scheduler"] = sampler, scheduler
    return fields


def infotext_setting_overrides(params: dict[str, Any], options: "Options") -> dict[str, Any]:
    """Settings named in the infotext (options declared with an infotext label) whose value
    differs from the current one. The checkpoint ("Model hash") is only taken when
    disable_weights_auto_swap is off, like A1111; values a setting does not accept are skipped."""
    overrides: dict[str, Any] = {}
    for label, key in options.infotext_to_option().items():
        value = params.get(label)
        if value is None:
            continue
        if key == "sd_model_checkpoint" and _option_or(options, "disable_weights_auto_swap",
                                                       True):
            continue
        try:
            value = coerce_value(options.info(key), value)
        except ValueError as error:
            log.warning("infotext: %s is not used for setting %s: %s", label, key, error)
            continue
        if value != options.get(key):
            overrides[key] = value
    return overrides


def parse_request_infotext(text: str, options: "Options",
                           style_db: "StyleDatabase | None" = None,
                           on_parsed: Callable[[str, dict], None] | None = None
                           ) -> dict[str, Any]:
    """The infotext as A1111's flat dict, honouring the infotext_skip_pasting and
    infotext_styles settings; `on_parsed(text, params)` may edit it (on_infotext_pasted)."""
    params = parse_generation_parameters(
        text, skip_fields=_option_or(options, "infotext_skip_pasting", None) or (),
        style_db=style_db,
        infotext_styles=_option_or(options, "infotext_styles", None) or "Apply if any")
    if on_parsed is not None:
        on_parsed(text, params)
    return params


def _option_or(options: "Options", key: str, default: Any) -> Any:
    """A setting's value, or `default` in a registry that does not declare it."""
    try:
        return options.get(key)
    except KeyError:
        return default


def apply_request_infotext(request: RequestModel, options: "Options",
                           style_db: "StyleDatabase | None" = None,
                           on_parsed: Callable[[str, dict], None] | None = None) -> RequestModel:
    """`request` with the fields its `infotext` gives filled in (a new model; the same one when
    there is no infotext). Fields the client sent always win. A filled-in value the request model
    rejects is a 422 naming the field."""
    if not getattr(request, "infotext", None):
        return request
    params = parse_request_infotext(request.infotext, options, style_db, on_parsed)
    sent = request.model_dump(exclude_unset=True)
    model_fields = type(request).model_fields
    values = {name: value for name, value in infotext_request_fields(params).items()
              if name in model_fields and name not in request.model_fields_set}
    values.update(sent)

    overrides = dict(request.override_settings or {})
    for key, value in infotext_setting_overrides(params, options).items():
        overrides.setdefault(key, value)
    values["override_settings"] = overrides
    try:
        return type(request).model_validate(values)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
                             for item in error.errors())
        raise HTTPException(status_code=422,
                            detail=f"infotext gives an invalid value: {problems}") from error
