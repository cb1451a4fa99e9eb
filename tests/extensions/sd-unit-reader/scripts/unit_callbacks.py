"""The test extension's callbacks: it notes every model that loads (on_model_loaded), and reads
its own infotext key back when an infotext is pasted (on_infotext_pasted), as ControlNet reads
its "ControlNet 0" keys: "Unit steps: N" becomes the pasted Steps."""
from modules import script_callbacks

loaded_models = []


def note_model(sd_model):
    loaded_models.append(type(sd_model).__name__)


def read_unit_steps(infotext, params):
    if "Unit steps" in params:
        params["Steps"] = params["Unit steps"]


script_callbacks.on_model_loaded(note_model)
script_callbacks.on_infotext_pasted(read_unit_steps)


def count_units_as_words(params):
    """A wildcard-like extension: `__unit__` stands for what it will put in the prompt."""
    params.prompt = params.prompt.replace("__unit__", "red blue green yellow")


script_callbacks.on_before_token_counter(count_units_as_words)


extra_noise_calls = []


def no_extra_noise(params):
    """on_extra_noise: records the call and takes the extra noise away."""
    extra_noise_calls.append(tuple(params.noise.shape))
    params.noise = params.noise * 0


script_callbacks.on_extra_noise(no_extra_noise)
