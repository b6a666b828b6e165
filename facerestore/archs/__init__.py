"""Network architectures, one file per model family. They import nothing but torch (and stylegan2.py)."""
