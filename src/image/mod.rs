//! CPU image work: cheap JPEG header inspection, EXIF orientation, re-encoding of what readers
//! cannot take as is, full decode (the reference for GPU tests), resize and encode.
