"""Fine-tuning tasks: a backbone plus a head, trainable with compile/fit."""
from keras_lm.tasks.causal_lm import CausalLM
from keras_lm.tasks.classifier import Classifier
from keras_lm.tasks.multiple_choice import MultipleChoice
from keras_lm.tasks.prompt_completion import prompt_completion_dataset
from keras_lm.tasks.prompting import ClozeClassifier, InContextClassifier
from keras_lm.tasks.saved_model import SavedModelEncoder, SavedModelLayer, SavedModelPreprocessor
from keras_lm.tasks.sentence_encoder import SentenceEncoder, SentencePooling
from keras_lm.tasks.seq2seq_lm import Seq2SeqLM
from keras_lm.tasks.span_qa import SpanQA
from keras_lm.tasks.task import Task
from keras_lm.tasks.token_classifier import TokenClassifier

__all__ = ["CausalLM", "Classifier", "ClozeClassifier", "InContextClassifier", "MultipleChoice", "SavedModelEncoder", "SavedModelLayer", "SavedModelPreprocessor",
           "SentenceEncoder", "SentencePooling", "Seq2SeqLM", "SpanQA", "Task", "TokenClassifier",
           "prompt_completion_dataset"]
