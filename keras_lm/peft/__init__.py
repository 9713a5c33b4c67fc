"""Parameter-efficient fine-tuning: LoRA, bottleneck adapters, prompt tuning, BitFit, freezing
policies and layer-wise learning-rate decay, on keras_lm encoders and the tasks built on them."""
from keras_lm.peft.adapters import AdaptedOutput, AdapterEncoder, BottleneckAdapter, add_adapters
from keras_lm.peft.freezing import POLICIES, bitfit, freeze
from keras_lm.peft.layerwise_decay import (
    LayerwiseDecay,
    LayerwiseDecayAdam,
    LayerwiseDecayAdamW,
    LayerwiseDecaySGD,
    layerwise_decay,
)
from keras_lm.peft.lora import (
    DEFAULT_TARGETS,
    TARGETS,
    load_lora_weights,
    lora,
    lora_layers,
    merge_lora,
    save_lora_weights,
)
from keras_lm.peft.prompt_tuning import PromptEncoder, SoftPrompt, prompt_padding_mask, prompt_tuning
from keras_lm.peft.variables import trainable_parameter_count
