"""The corpus: synthesized source images and truth, mutations of the negative corpus, objects from the wild."""
