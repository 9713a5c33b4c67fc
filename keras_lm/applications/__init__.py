"""keras_lm.applications: the model zoo, named architectures in standard sizes with weight import."""
from keras_lm.applications.bert import BERT_SIZES, Bert, count_bert_parameters
from keras_lm.applications.checkpoint_hf import CheckpointError, CheckpointNotFoundError
from keras_lm.applications.electra import ELECTRA_SIZES, Electra, ElectraGenerator
from keras_lm.applications.gpt2 import GPT2_SIZES, Gpt2
from keras_lm.applications.llama import LLAMA_SIZES, Llama
from keras_lm.applications.roberta import ROBERTA_SIZES, Roberta
from keras_lm.applications.t5 import T5, T5_SIZES
from keras_lm.applications.transformer import TRANSFORMER_SIZES, Transformer, count_transformer_parameters

__all__ = [
    "BERT_SIZES",
    "Bert",
    "CheckpointError",
    "CheckpointNotFoundError",
    "ELECTRA_SIZES",
    "Electra",
    "ElectraGenerator",
    "GPT2_SIZES",
    "Gpt2",
    "LLAMA_SIZES",
    "Llama",
    "ROBERTA_SIZES",
    "Roberta",
    "T5",
    "T5_SIZES",
    "TRANSFORMER_SIZES",
    "Transformer",
    "count_bert_parameters",
    "count_transformer_parameters",
]
