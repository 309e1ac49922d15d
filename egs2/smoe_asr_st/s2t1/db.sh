# Corpus locations for the smoe_asr_st recipe (sourced by run.sh).
# Leave a variable empty to let the recipe fetch the data itself where it can.

# Asterisk core sounds 1.6.1 (English speech, 8 kHz .wav + 16 kHz G.722, en/fr transcripts).
# Empty: stage 1 runs `apt-get download` (private apt state, nothing installed),
# falling back to the upstream tarballs at downloads.asterisk.org.
# Otherwise one of:
#   - a folder holding the four .debs: asterisk-core-sounds-en_*.deb,
#     asterisk-core-sounds-en-wav_*.deb, asterisk-core-sounds-en-g722_*.deb,
#     asterisk-core-sounds-fr_*.deb
#   - a folder holding the upstream tarballs asterisk-core-sounds-{en-wav,en-g722,fr-wav}-1.6.1.tar.gz
#   - an unpacked/installed tree, e.g. /usr/share (read in place; must contain
#     core-sounds-en.txt[.gz], core-sounds-fr.txt[.gz] and the English .wav/.g722 folder)
ASTERISK=

# MuST-C (en-XX, e.g. en-fr/data/{train,dev,tst-COMMON}/{wav,txt}); not fetched automatically.
MUSTC=

# CoVoST 2 (Common Voice clips + CoVoST TSVs); not fetched automatically.
COVOST2=
