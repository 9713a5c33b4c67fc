"""Beam search with the GNMT length penalty, as one ``tf.while_loop`` (usable inside a ``tf.function``, with XLA).

keras-hub's ``BeamSampler`` ranks beams by their summed log-probability only and has no notion of
finished hypotheses per row, so encoder-decoder decoding uses this search: it keeps ``num_beams``
live prefixes per row and, separately, the ``num_beams`` best finished hypotheses, each scored
``sum(log p) / ((5 + length) / 6) ** alpha`` (Wu et al., 2016; ``length`` counts the generated
tokens, the end token included).
"""
from __future__ import annotations

import tensorflow as tf

#: Score of an empty slot (a beam that does not exist yet, or a finished list not yet filled).
NEG_INF = -1e9


def length_penalty(length, alpha):
    """The GNMT length penalty ``((5 + length) / 6) ** alpha`` (float32; ``length`` may be a tensor).

    Example:
        >>> float(length_penalty(1, 0.6)), round(float(length_penalty(7, 0.6)), 4)
        (1.0, 1.5157)
    """
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, tf.cast(alpha, tf.float32))


def beam_search(next_log_probs, start_token_id, cache, batch_size: int, num_beams: int, buffer_length: int,
                max_new_tokens, stop_token_ids, alpha):
    """The best hypothesis per row: ``(sequences [batch, buffer_length + 1] int32, scores [batch] float32)``.

    The rules (those of Hugging Face transformers' beam search, with the GNMT penalty):

    - each step extends every live beam by every token and ranks the ``2 * num_beams`` best
      candidates by summed log-probability;
    - a candidate ending in a stop token becomes a finished hypothesis when it ranks among the
      first ``num_beams`` of them (so one beam is exactly greedy decoding when ``alpha`` is 0);
      the ``num_beams`` best finished hypotheses of each row are kept, by penalized score;
    - the ``num_beams`` best other candidates are the next live beams (their caches follow them);
    - a row is done once its best finished score is at least the best score any live beam could
      still reach (``sum log p / penalty`` at the most favourable remaining length); the loop
      ends when every row is done or after ``max_new_tokens`` steps, when the live beams join
      the finished ones at length ``max_new_tokens``.

    Args:
        next_log_probs: ``fn(tokens [batch * num_beams, 1], cache, index) -> (log_probs
            [batch * num_beams, vocabulary] float32, cache)``: log-probabilities of the token at
            position ``index + 1`` given the token at ``index`` (forbidden ids ``-inf``).
        start_token_id: the token at position 0 (the decoder start).
        cache: a tuple of tensors whose first axis is ``batch * num_beams`` (row-major: the beams
            of row 0 first); reordered with the beams.
        batch_size, num_beams, buffer_length: static sizes; ``buffer_length >= max_new_tokens``.
        max_new_tokens: scalar int32 tensor, the longest hypothesis.
        stop_token_ids: ``[S]`` int32, -1 for unused slots.
        alpha: the length-penalty exponent (0: plain summed log-probability).

    Returns:
        Position 0 holds the start token, then the hypothesis, then zeros.
    """
    batch, beams, width = batch_size, num_beams, buffer_length + 1
    positions = tf.range(width)[None, None, :]
    max_new_tokens = tf.cast(max_new_tokens, tf.int32)
    alive_sequences = tf.where(positions == 0, tf.cast(start_token_id, tf.int32),
                               tf.zeros((batch, beams, width), tf.int32))
    alive_log_probs = tf.tile(tf.constant([[0.0] + [NEG_INF] * (beams - 1)], tf.float32), [batch, 1])
    finished_sequences = tf.zeros((batch, beams, width), tf.int32)
    finished_scores = tf.fill((batch, beams), NEG_INF)
    done = tf.zeros((batch,), tf.bool)
    rank = tf.range(2 * beams)[None, :]
    row_offsets = tf.range(batch)[:, None] * beams

    def cond(index, alive_sequences, alive_log_probs, cache, finished_sequences, finished_scores, done):
        return tf.logical_and(index < max_new_tokens, tf.logical_not(tf.reduce_all(done)))

    def body(index, alive_sequences, alive_log_probs, cache, finished_sequences, finished_scores, done):
        tokens = tf.reshape(tf.gather(alive_sequences, index, axis=2), (batch * beams, 1))
        log_probs, cache = next_log_probs(tokens, cache, index)
        vocabulary = tf.shape(log_probs)[-1]
        scores = alive_log_probs[:, :, None] + tf.reshape(log_probs, (batch, beams, vocabulary))
        top_scores, top_flat = tf.math.top_k(tf.reshape(scores, (batch, -1)), k=2 * beams)
        parents, new_tokens = top_flat // vocabulary, top_flat % vocabulary
        candidates = tf.gather(alive_sequences, parents, batch_dims=1)
        candidates = tf.where(positions == index + 1, new_tokens[:, :, None], candidates)
        is_stop = tf.reduce_any(tf.equal(new_tokens[:, :, None], stop_token_ids[None, None, :]), axis=-1)

        # Finished: stop-token candidates among the first `beams`, merged with the kept ones.
        admitted = tf.logical_and(is_stop, rank < beams)
        new_scores = tf.where(admitted, top_scores / length_penalty(index + 1, alpha), NEG_INF)
        finished_scores, kept = tf.math.top_k(tf.concat([finished_scores, new_scores], axis=1), k=beams)
        finished_sequences = tf.gather(tf.concat([finished_sequences, candidates], axis=1), kept, batch_dims=1)

        # Alive: the best candidates that did not stop; their caches follow them.
        alive_log_probs, kept = tf.math.top_k(tf.where(is_stop, NEG_INF, top_scores), k=beams)
        alive_sequences = tf.gather(candidates, kept, batch_dims=1)
        parents = tf.gather(parents, kept, batch_dims=1)
        flat_parents = tf.reshape(parents + row_offsets, (-1,))
        cache = tf.nest.map_structure(lambda c: tf.gather(c, flat_parents), cache)

        # Done: no live beam can beat the best finished hypothesis at any remaining length.
        best_alive = alive_log_probs[:, 0]
        reachable = tf.maximum(best_alive / length_penalty(index + 2, alpha),
                               best_alive / length_penalty(max_new_tokens, alpha))
        done = finished_scores[:, 0] >= reachable
        return index + 1, alive_sequences, alive_log_probs, cache, finished_sequences, finished_scores, done

    state = (tf.constant(0, tf.int32), alive_sequences, alive_log_probs, cache, finished_sequences,
             finished_scores, done)
    _, alive_sequences, alive_log_probs, _, finished_sequences, finished_scores, _ = tf.while_loop(
        cond, body, state, maximum_iterations=buffer_length)
    # Live beams end at max_new_tokens (a row that stopped early has none that could win; ties go
    # to the finished hypotheses, which come first).
    alive_scores = alive_log_probs / length_penalty(max_new_tokens, alpha)
    scores = tf.concat([finished_scores, alive_scores], axis=1)
    best = tf.argmax(scores, axis=1, output_type=tf.int32)
    sequences = tf.gather(tf.concat([finished_sequences, alive_sequences], axis=1), best, batch_dims=1)
    return sequences, tf.gather(scores, best, batch_dims=1)
