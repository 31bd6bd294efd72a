//! DALI `tfrecord2idx` index: ASCII, one `"<offset> <size>\n"` line per record.
