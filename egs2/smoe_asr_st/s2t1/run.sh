#!/usr/bin/env bash
# S-MoE joint ASR + ST (English -> French) on mixed-bandwidth speech.
#
# Default corpus: the Asterisk core sounds, each English prompt as a real
# 8 kHz telephone recording (<nb>) and a real 16 kHz G.722 recording (<wb>),
# with human French translations. Fetched by stage 1 (see db.sh). Its 13
# minutes of one speaker are too little to learn from, so training adds a
# slice of the offline tts_ui corpus (human UI translations read by offline
# TTS voices, half narrowband); the tests stay the real Asterisk prompts.
#
#   ./run.sh                                   # everything, tiny CPU model
#   ./run.sh --stage 8 --train_config conf/train_smoe_encdec.yaml --ngpu 4
#   cmd_backend=slurm ./run.sh --ngpu 8 --num_nodes 2 --stage 8
#
# Each stage is a few lines calling one Python entry point.
set -euo pipefail

stage=1                 # first stage to run
stop_stage=100          # last stage to run
ngpu=0                  # GPUs per node for training (0: CPU)
num_nodes=1             # nodes for training (>1: Slurm, srun + ESPnet's slurm launcher)
nj=2                    # parallel decoding and data-prep jobs
corpus=asterisk         # asterisk (real NB/WB speech + tts_ui slice in training) | tts_ui (benchmark)
                        # | mustc | europarl_st (English->French corpora you have: MUSTC / EUROPARL_ST in db.sh)
tts_ui_sizes=""         # tts_ui train/dev/test sentences (default: asterisk "3000 0 0", tts_ui "20000 1000 1000")
seed=1                  # corpus seed (tts_ui; mustc/europarl_st: which utterances are narrowband)
nb_fraction=0.5         # mustc/europarl_st: share of train/dev utterances made narrowband (tests: both)
nb_source=real          # narrowband audio: real (telephone recordings) | simulated (from wideband)
max_prompts=0           # >0: a small slice of the corpus (CI)
vocab_size=600          # sentencepiece pieces besides the special tokens (80 ms frames: keeps
                        # CTC targets at ~0.45 tokens per frame; 300 pieces need ~0.6)
train_config=conf/tuning/train_smoe_encdec_tiny.yaml
inference_config=conf/decode.yaml
inference_model=valid.acc.ave.pth
inference_ngpu=0        # GPUs per decoding job
tag=""                  # experiment name, used as given (default: [<corpus>_]<config name>)
train_args=""           # extra flags for espnet_smoe.bin.s2t_train, e.g. "--max_epoch 5"
inference_args=""       # extra flags for espnet_smoe.bin.s2t_inference
test_sets=""            # default: the corpus's test sets
tasks="asr st_fra"

. ./path.sh
. ./cmd.sh
. ./db.sh
. local/parse_options.sh "$@"

# Training and dev data are *_mix dirs made by stage 5 (local/combine_data.py): the
# sources below without any dev/test sentence, transcripts in the scored form.
st_corpus=false
case "${corpus}" in
    # Asterisk train + a tts_ui slice; tested on the real Asterisk prompts
    asterisk) train_sources="train tts_ui_train"; dev_source=dev; corpus_tests="test_nb test_wb"
              [ -n "${tts_ui_sizes}" ] || tts_ui_sizes="3000 0 0" ;;
    # tts_ui models are also tested on the real Asterisk prompts
    tts_ui)   train_sources=tts_ui_train; dev_source=tts_ui_dev
              corpus_tests="tts_ui_test_nb tts_ui_test_wb ddtp_test_nb ddtp_test_wb test_nb test_wb"
              [ -n "${tts_ui_sizes}" ] || tts_ui_sizes="20000 1000 1000" ;;
    # MuST-C en-fr / Europarl-ST en->fr (paths in db.sh), cut per utterance by stage 3 (local/st_corpus.py)
    # (no Asterisk stages 1-2 and split_data, no tts_ui slice: st_corpus=true)
    mustc)    train_sources=mustc_train; dev_source=mustc_dev; corpus_db=${MUSTC}; st_corpus=true
              corpus_tests="mustc_tst_common_nb mustc_tst_common_wb mustc_tst_he_nb mustc_tst_he_wb"
              [ -n "${tts_ui_sizes}" ] || tts_ui_sizes="0 0 0" ;;
    europarl_st) train_sources=europarl_st_train; dev_source=europarl_st_dev; corpus_db=${EUROPARL_ST}
              corpus_tests="europarl_st_test_nb europarl_st_test_wb"; st_corpus=true
              [ -n "${tts_ui_sizes}" ] || tts_ui_sizes="0 0 0" ;;
    *) echo "$0: unknown --corpus ${corpus} (asterisk, tts_ui, mustc or europarl_st)" >&2; exit 1 ;;
esac
read -r n_train n_dev n_test <<< "${tts_ui_sizes}"
[ "${n_train}" -gt 0 ] || train_sources=${train_sources/tts_ui_train/}
train_set=${dev_source/dev/train}_mix; valid_set=${dev_source}_mix
[ -n "${test_sets}" ] || test_sets=${corpus_tests}
if [ -z "${tag}" ]; then   # an explicit --tag is used as given
    tag=$(basename "${train_config}" .yaml)
    [ "${corpus}" = asterisk ] || tag=${corpus}_${tag}
fi
exp=exp/${tag}
token_dir=data/token_list/${corpus}_bpe_unigram${vocab_size}
stats_dir=exp/stats_${corpus}_bpe${vocab_size}
decode_dir=${exp}/decode_$(basename "${inference_config}" .yaml)_$(basename "${inference_model}" .pth)
log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (run.sh:${BASH_LINENO[0]}) $*"; }

# ESPnet data names: wav.scp->speech, text (prompt + target), text.prev, text.ctc, utt2bw->bandwidth
data_opts() {  # $1: flag, $2: data dir
    local f=$1 d=$2
    echo "--${f} ${d}/wav.scp,speech,sound --${f} ${d}/text,text,text --${f} ${d}/text.prev,text_prev,text" \
         "--${f} ${d}/text.ctc,text_ctc,text --${f} ${d}/utt2bw,bandwidth,text"
}
token_opts="--token_type bpe --bpemodel ${token_dir}/bpe.model --token_list ${token_dir}/tokens.txt"

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ] && ! ${st_corpus}; then
    log "Stage 1: fetch the Asterisk prompts (en wav, en g722, en/fr transcripts) and decode G.722"
    python -m local.fetch_asterisk --db "${ASTERISK}" --download_dir downloads --out_dir data/local/asterisk
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ] && ! ${st_corpus}; then
    log "Stage 2: 16 kHz audio in both bandwidths (narrowband: ${nb_source}) and utt2bw"
    python -m local.make_bandwidth --inventory data/local/asterisk/prompts.tsv \
        --out_dir data/local/bandwidth --nb_source "${nb_source}"
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    if ${st_corpus}; then
        log "Stage 3: ${corpus} (${corpus_db}) cut into 16 kHz utterances, ${nb_fraction} of train/dev narrowband"
        python -m local.st_corpus --corpus "${corpus}" --db "${corpus_db}" --data_dir data --audio_dir dump/audio \
            --nb_fraction "${nb_fraction}" --seed "${seed}" --train_config "${train_config}" --nj "${nj}"
    else
        log "Stage 3: filter and split by prompt family into data/{train,dev,test_nb,test_wb}"
        python -m local.split_data --inventory data/local/asterisk/prompts.tsv \
            --bandwidth data/local/bandwidth/bandwidth.tsv --data_dir data --local_dir data/local \
            --max_prompts "${max_prompts}"
    fi
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    if [ "${n_train}" -gt 0 ]; then
        log "Stage 4: tts_ui corpus (${tts_ui_sizes}: text pairs, TTS, channel) into data/tts_ui_*"
        python -m local.tts_ui.prepare --out_data data --audio_dir downloads/tts_ui/audio \
            --num_train "${n_train}" --num_dev "${n_dev}" --num_test "${n_test}" --nj "${nj}" --seed "${seed}"
    else
        log "Stage 4: no tts_ui corpus (--tts_ui_sizes ${tts_ui_sizes})"
    fi
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    log "Stage 5: data/${train_set} (${train_sources}) and data/${valid_set}, without any dev/test sentence"
    # shellcheck disable=SC2046
    python -m local.combine_data --out "data/${train_set}" --sets $(printf 'data/%s ' ${train_sources}) \
        --exclude $(printf 'data/%s ' ${dev_source} ${corpus_tests})
    python -m local.combine_data --out "data/${valid_set}" --sets "data/${dev_source}" \
        --exclude $(printf 'data/%s ' ${corpus_tests})
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
    log "Stage 6: sentencepiece model and token list in ${token_dir}"
    python -m local.make_tokens --train_dir "data/${train_set}" --vocab_size "${vocab_size}" --out_dir "${token_dir}"
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
    log "Stage 7: feature statistics and shapes in ${stats_dir}"
    # shellcheck disable=SC2046
    ${train_cmd} "${stats_dir}/logs/stats.log" python -m espnet_smoe.bin.s2t_train \
        --collect_stats true --config "${train_config}" --normalize none --use_preprocessor true ${token_opts} \
        $(data_opts train_data_path_and_name_and_type "data/${train_set}") \
        $(data_opts valid_data_path_and_name_and_type "data/${valid_set}") \
        --train_shape_file "data/${train_set}/wav.scp" --valid_shape_file "data/${valid_set}/wav.scp" \
        --ngpu 0 --num_workers "${nj}" --output_dir "${stats_dir}"
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
    log "Stage 8: train ${exp} (${train_config}; ngpu=${ngpu}, num_nodes=${num_nodes})"
    dist_opts="--ngpu ${ngpu} --multiprocessing_distributed true"
    if [ "${num_nodes}" -gt 1 ]; then
        # srun starts one task per node, which spawns ngpu workers (ESPnet reads the node rank from Slurm)
        dist_opts="--ngpu ${ngpu} --multiprocessing_distributed true --dist_launcher slurm"
        dist_opts+=" --dist_init_method file://$(pwd)/${exp}/.dist_init_$(date +%s)"
    fi
    mkdir -p "${exp}"
    # shellcheck disable=SC2046,SC2086
    ${cuda_cmd} --gpu "${ngpu}" --num_nodes "${num_nodes}" "${exp}/train.log" \
        python -m espnet_smoe.bin.s2t_train --config "${train_config}" --use_preprocessor true ${token_opts} \
        $(data_opts train_data_path_and_name_and_type "data/${train_set}") \
        $(data_opts valid_data_path_and_name_and_type "data/${valid_set}") \
        --normalize_conf "stats_file=${stats_dir}/train/feats_stats.npz" \
        --train_shape_file "${stats_dir}/train/speech_shape" --valid_shape_file "${stats_dir}/valid/speech_shape" \
        --resume true ${dist_opts} --output_dir "${exp}" ${train_args}
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
    log "Stage 9: decode ${test_sets} x ${tasks} with ${inference_model} (${nj} jobs for all sets)"
    dir=${decode_dir}/jobs
    # each job: its own wav.scp and utt2bw over all test sets, shortest first (batches of similar length)
    _nj=$(python -m local.split_keys --nj "${nj}" --out_dir "${dir}" --sort_by_duration \
              $(for s in ${test_sets}; do echo "--scp data/${s}/wav.scp --extra data/${s}/utt2bw"; done))
    # one process per job decodes every set and task (ESPnet and the model load once)
    # shellcheck disable=SC2086
    ${decode_cmd} JOB=1:"${_nj}" "${dir}/logs/decode.JOB.log" \
        python -m espnet_smoe.bin.s2t_inference --config "${inference_config}" --ngpu "${inference_ngpu}" \
        --s2t_train_config "${exp}/config.yaml" --s2t_model_file "${exp}/${inference_model}" \
        --data_path_and_name_and_type "${dir}/keys.JOB.scp,speech,sound" \
        --data_path_and_name_and_type "${dir}/utt2bw.JOB,bandwidth,text" \
        --task_sym ${tasks} --output_dir "${dir}/output.JOB" \
        ${inference_args}
    for test_set in ${test_sets}; do
        for task in ${tasks}; do
            sub=${task}; [ "$(wc -w <<< "${tasks}")" -gt 1 ] || sub=""
            python -m local.merge_decode --nj "${_nj}" --dir "${dir}" --task "${sub}" \
                --keys "data/${test_set}/wav.scp" --out_dir "${decode_dir}/${test_set}_${task}"
        done
    done
fi

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
    log "Stage 10: score (WER for asr, BLEU/chrF for st) -> ${exp}/RESULTS.md, ${exp}/results.json"
    python -m local.score --data_dir data --decode_dir "${decode_dir}" --test_sets "${test_sets}" \
        --tasks "${tasks}" --out_dir "${exp}" --tag "${tag}"
    cat "${exp}/RESULTS.md"
fi

if [ ${stage} -le 11 ] && [ ${stop_stage} -ge 11 ]; then
    log "Stage 11: pack ${exp}/packed.zip (and model_info.json: total/active parameters)"
    python -m espnet_smoe.bin.model_info --config "${exp}/config.yaml" --out "${exp}/model_info.json"
    python -m espnet2.bin.pack s2t --s2t_train_config "${exp}/config.yaml" \
        --s2t_model_file "${exp}/${inference_model}" --option "${token_dir}/bpe.model" \
        --option "${stats_dir}/train/feats_stats.npz" --option "${exp}/RESULTS.md" \
        --outpath "${exp}/packed.zip"
fi

log "Done: ${exp}"
