"""keras_lm.applications: the model zoo, named architectures in standard sizes with weight import."""
from keras_lm.applications.bert import BERT_SIZES, Bert, count_bert_parameters

__all__ = ["BERT_SIZES", "Bert", "count_bert_parameters"]
