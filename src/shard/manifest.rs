//! `manifest.json`: the accounting of a conversion (written by the command layer).
