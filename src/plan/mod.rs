//! Raw clap arguments → validated plans, once. Workers take plans and never re-validate
//! (ripgrep's lowargs → hiargs split).
