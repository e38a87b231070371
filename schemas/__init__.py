"""Event contracts: typed models of CONTRACT.md, decoding with classified failures, topic names."""
