"""One help sentence (with its unit) per option of the `keras-lm` commands.

`OPTION_HELP` is keyed by argument name and shared by every command; `COMMAND_OPTION_HELP`, keyed
by "command name", holds the few arguments whose meaning depends on the command. Every option of
every command must have an entry (tests/test_cli_help.py checks it).
"""

OPTION_HELP = {
    # files and folders
    "output": "the run folder: every file of the run is read from and written under it",
    "vocabulary": "a WordPiece vocab.txt file (default: OUTPUT/vocab.txt, written by train-vocabulary)",
    "encoder": "the encoder export folder (a TF-Hub-style pair) to fine-tune (default: OUTPUT/encoder)",
    "backup_dir": "a folder for step-level backups: a killed run resumes where it stopped (default: no backups)",
    "checkpoint": "a Hugging Face, Google BERT or keras-hub checkpoint folder, or the embedded all-minilm-l6-v2",
    "from_hf": "start from this checkpoint folder instead of a pretraining run: it is imported to OUTPUT/encoder "
               "first (Hugging Face, Google BERT or keras-hub preset, or all-minilm-l6-v2)",
    "tried": "a YAML file listing the options tried and their validation figures, for the report's table",
    # data
    "corpus": "one or more corpora whose train splits are read: shakespeare, movie_snippets, state_of_the_union, "
              "wordnet_glosses, tfds:NAME or text files",
    "embedding_corpus": "the corpora the co-occurrence token embeddings are counted on (default: --corpus)",
    "dataset": "the labelled dataset whose train/validation/test splits are used when no --train file is given: "
               "an embedded corpus (movie_snippets) or tfds:NAME",
    "train": "your training file: CSV, TSV or JSON Lines with a text and a label column (instead of --dataset)",
    "validation": "your validation file, same columns as --train (default: every 10th training example, held out)",
    "test": "your test file, same columns as --train (default: the figures are measured on the validation examples)",
    "text_column": "the column (CSV/TSV header name or JSON key) holding the text",
    "label_column": "the column holding the label: a class name or an integer class id",
    "text_pair_column": "the column holding a second text, for sentence-pair tasks (default: single texts)",
    "max_train_examples": "use only the first N training examples (examples; default: all)",
    "data": "a labelled CSV, TSV or JSON Lines file to measure the model on",
    "inputs": "text files (one input per non-blank line; - reads standard input) or CSV/TSV/JSON Lines files "
              "(their --text-column)",
    # model shape
    "size": "the encoder size: tiny, mini, small, medium, base or large (BERT's shapes)",
    "vocabulary_size": "the number of WordPiece tokens to learn (tokens)",
    "lowercase": "lowercase text before tokenizing",
    "sequence_length": "tokens per packed row, [CLS] and [SEP] included (tokens)",
    "objective": "the pretraining objective: mlm (masked LM), mlm+nsp (BERT: plus next-sentence prediction) or "
                 "rtd (ELECTRA's replaced-token detection)",
    "norm_first": "LayerNorm before each sub-layer (pre-LN blocks) instead of after",
    "dropout": "dropout rate of the encoder, a fraction in [0, 1)",
    "token_embeddings": "how the token embeddings start: random, or cooccurrence (PPMI + SVD vectors of the corpus)",
    "train_token_embeddings": "train the token embeddings (off: keep their starting vectors)",
    "embedding_dim": "width of the token embeddings (default: the blocks' width; another width adds a learnt "
                     "projection to the blocks, as in ELECTRA)",
    "discriminator_weight": "weight of the replaced-token loss against the generator's masked-LM loss (rtd only)",
    "max_predictions": "masked tokens predicted per row at most (tokens)",
    "num_classes": "the number of classes (default: as many as the training data has)",
    "pooling": "what the classifier head reads: cls (the pooler on [CLS]) or mean (the mean of the token vectors)",
    "transfer": "what the pretrained start takes from the export: all (every weight) or embeddings (only the "
                "embedding block; new random transformer blocks)",
    # training
    "steps": "optimizer steps to train for (steps)",
    "epochs": "passes over the training examples (epochs)",
    "batch_size": "examples per batch (examples)",
    "learning_rate": "peak learning rate of AdamW after warmup (per step)",
    "warmup": "steps of linear learning-rate warmup (steps)",
    "evaluations": "how many times the held-out loss is measured during pretraining (measurements)",
    "seed": "random seed: the same seed gives the same run",
    "seeds": "fine-tune once per seed and report the mean and spread (default: just --seed)",
    "compare_random_init": "also fine-tune from a randomly initialised encoder of the same shape, as a baseline",
    "random_init_learning_rate": "peak learning rate of the random-init baseline (default: --learning-rate)",
    "l2_sp": "L2-SP strength: keep the pretrained start near its weights, alpha / 2 * ||w - w0||^2 "
             "(default 0: off; the random-init baseline never has it)",
    "random_init_epochs": "epochs of the random-init baseline (epochs; default: --epochs)",
    "strategy": "a tf.distribute strategy: auto, one_device, mirrored, multi_worker or tpu (default: none, the "
                "default device)",
    "mixed_precision": "the dtype policy: auto (bfloat16 where it is native and faster), float32, "
                       "mixed_bfloat16 or mixed_float16",
    # serving and generation
    "sentences": "sentences to classify with the serving export",
    "labels": "class names by id, for an export written without names",
    "model": "the model to use",
    "overwrite": "replace OUTPUT if it holds a previous export of the same kind (nothing else is ever replaced)",
    "prompts": "one or more prompts (a seq2seq model: the source texts to translate)",
    "max_new_tokens": "tokens to generate per prompt at most (tokens; default: 32, a seq2seq model: its own "
                      "maximum)",
    "temperature": "sampling temperature: 0 is greedy decoding, higher is more varied",
    "top_k": "sample only among the k most likely tokens, 0 keeps every token (tokens)",
    "top_p": "sample from the smallest set of tokens whose probability reaches p, in (0, 1]; 1 keeps every "
             "token (a probability)",
    "num_beams": "beams of a .keras Seq2SeqLM's beam search (beams; default: 4, 1 is greedy)",
}

COMMAND_OPTION_HELP = {
    ("export encoder", "output"): "the export folder itself (not a run folder), e.g. runs/a/encoder2; it must "
                                  "not exist yet, unless --overwrite is given and it holds a previous export of "
                                  "the same kind",
    ("export serving", "output"): "the export folder itself (not a run folder), e.g. runs/a/serving/2; it must "
                                  "not exist yet, unless --overwrite is given and it holds a previous export of "
                                  "the same kind",
    ("export encoder", "model"): "the .keras file to export: a backbone or a pretrainer (RUN/pretrainer.keras)",
    ("export serving", "model"): "the .keras file of a fine-tuned task to export (e.g. RUN/classifier.keras)",
    ("export encoder", "vocabulary"): "the WordPiece vocab.txt file the model was trained with",
    ("export encoder", "sequence_length"): "tokens per row of the exported preprocessor (tokens)",
    ("import-checkpoint", "sequence_length"): "tokens per row of the exported preprocessor (tokens)",
    ("serve", "model"): "the serving export to ask (default: OUTPUT/serving/1)",
    ("generate", "model"): "a generation or seq2seq serving export folder, or a .keras CausalLM or Seq2SeqLM file",
    ("predict", "model"): "the serving export folder to ask (e.g. RUN/serving/1)",
    ("evaluate", "model"): "the classifier serving export folder to measure (e.g. RUN/serving/1)",
    ("generate", "seed"): "sampling seed: the same seed gives the same text",
    ("predict", "batch_size"): "inputs sent to the model per call (inputs)",
    ("evaluate", "batch_size"): "examples sent to the model per call (examples)",
    ("evaluate", "text_column"): "the column (CSV/TSV header name or JSON key) holding the text",
    ("predict", "text_column"): "the column of CSV/TSV/JSON Lines inputs holding the text (text files: every line)",
}


def option_help(command: str, name: str) -> str | None:
    """The help sentence of option `name` of `command` (None when there is none)."""
    return COMMAND_OPTION_HELP.get((command, name), OPTION_HELP.get(name))
