"""The recipe's data preparation, scoring and result tools.

Run from the recipe dir (``egs2/smoe_asr_st/s2t1``) as ``python -m local.<module>``; the
modules import each other as ``local.<module>``. Shared concepts live in one module each:
``file_io`` (Kaldi and TSV files), ``stage`` (stage markers), ``log`` (logging set-up),
``debian`` (packages from Debian without installing them), ``data_dir`` (S2T data dirs: prompt
tokens, the writer and ``validate_data_dir``).
"""
