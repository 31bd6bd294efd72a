//! Raw arguments → validated plans.
