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
