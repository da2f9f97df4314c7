"""Images in: safe file reading and decoding, dataset sources and discovery, datasets with their
fingerprint and groups, grouped fold plans, cell-level preprocessing, the array cache, the audit
and the built-in generator. Imports only the package's foundation (errors, paths, config)."""
