//! `tf.train.Example` protobuf encode/decode by hand: map entries sorted by key (deterministic),
//! floats and int64s packed; a borrowed decode that finds `image/encoded` without copying.
