# Corpus locations for the smoe_asr_st recipe (sourced by run.sh).
# Leave a variable empty to let the recipe fetch the data itself where it can; a variable
# already set in the environment (e.g. ASTERISK=/data/debs ./run.sh) is kept.

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
ASTERISK=${ASTERISK:-}

# MuST-C en-fr (v1.x or v3.0; not fetched automatically): the folder holding en-fr/data/{train,dev,
# tst-COMMON,tst-HE}/{wav,txt} (the en-fr folder itself works too). ./run.sh --corpus mustc.
MUSTC=${MUSTC:-}

# Europarl-ST v1.1 (not fetched automatically): the folder holding en/audios/*.m4a and
# en/fr/{train,dev,test}/segments.*. ./run.sh --corpus europarl_st. Its .m4a need ffmpeg
# (apt-get install ffmpeg) unless converted to .wav/.flac next to them.
EUROPARL_ST=${EUROPARL_ST:-}

# CoVoST 2 (Common Voice clips + CoVoST TSVs); not fetched automatically.
COVOST2=${COVOST2:-}
