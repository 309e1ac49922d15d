#!/usr/bin/env bash
# S-MoE joint ASR + ST (English -> French) on mixed-bandwidth speech.
#
# Default: fine-tune the shipped base model (pretrained/, see its .json) on the default corpus.
# Default corpus: the Asterisk core sounds, each English prompt as a real 8 kHz telephone
# recording (<nb>) and a real 16 kHz G.722 recording (<wb>), with human French translations
# (fetched by stage 1, see db.sh). Its 13 minutes of one speaker are too little to learn from,
# so training adds a slice of the offline tts_ui corpus (human UI translations read by offline
# TTS voices, half narrowband); the tests stay the real Asterisk prompts.
#
#   ./run.sh                                   # everything: the base fine-tuned, tiny CPU model
#   ./run.sh --init scratch                    # the same model trained from random weights
#   ./run.sh --init scratch --stage 11 --s2t_config conf/train_smoe_encdec.yaml --ngpu 4
#   cmd_backend=slurm ./run.sh --init scratch --stage 11 --ngpu 8 --num_nodes 2
#
# Stages carry the numbers of ESPnet's egs2/TEMPLATE/s2t1/s2t.sh where the work is the same:
# data preparation up to 5 (the token list), then 10 statistics, 11 training, 12 decoding,
# 13 scoring, 14 packing. s2t.sh's 6-9 (language models) have no counterpart here.
#    1  fetch the Asterisk prompts, decode G.722               (corpora asterisk, tts_ui)
#    2  16 kHz audio of both bandwidths, utt2bw                  (corpora asterisk, tts_ui)
#    3  data dirs of the corpus: the Asterisk split, or MuST-C / Europarl-ST cut into utterances
#    4  the training sets (as s2t.sh's 4 makes its final ones): the tts_ui corpus
#       (--tts_ui_sizes), then data/*_mix without any dev/test sentence, and with
#       --speed_perturb_factors data/*_mix_sp
#    5  sentencepiece model and token list, or with --init base the base model's, unpacked
#   10  feature statistics and shapes
#   11  training
#   12  decoding every test set in every task
#   13  scoring: RESULTS.md, results.json
#   14  packing: packed.zip, model_info.json
# --skip_data_prep skips 1-5; --skip_train skips 5, 10 and 11 (the data stages also make the
# test sets); --skip_eval skips 12-13; --skip_packing 14; --skip_stages any list.
# Each stage is a few lines calling one Python entry point.
set -euo pipefail

stage=1                 # first stage to run
stop_stage=100          # last stage to run
skip_stages=""          # stages not to run, e.g. "2 14"
skip_data_prep=false    # true: skip the data preparation stages (1-5)
skip_train=false        # true: skip the stages only training needs (5, 10, 11)
skip_eval=false         # true: skip decoding and scoring (12, 13)
skip_packing=false      # true: skip packing (14)
ngpu=0                  # GPUs per node for training (0: CPU)
num_nodes=1             # nodes for training (>1: Slurm, srun + ESPnet's slurm launcher)
nj=2                    # parallel jobs of the data stages (3: cutting MuST-C/Europarl-ST, 4: TTS, speed)
inference_nj=2          # parallel decoding jobs (stage 12)
gpu_inference=false     # true: each decoding job on one GPU
dumpdir=dump            # audio made from other audio: MuST-C/Europarl-ST cut (3), speed perturbed (4)
expdir=exp              # experiment folders and feature statistics
corpus=asterisk         # asterisk (real NB/WB speech + tts_ui slice in training) | tts_ui (benchmark)
                        # | mustc | europarl_st (English->French corpora you have: MUSTC / EUROPARL_ST in db.sh)
tts_ui_sizes=""         # tts_ui train/dev/test sentences (default: asterisk "3000 0 0", tts_ui "20000 1000 1000")
seed=1                  # corpus seed (tts_ui; mustc/europarl_st: which utterances are narrowband)
nb_fraction=0.5         # mustc/europarl_st: share of train/dev utterances made narrowband (tests: both)
nb_source=real          # narrowband audio: real (telephone recordings) | simulated (from wideband)
speed_perturb_factors="" # training audio again at these speeds (stage 4), e.g. "0.9 1.0 1.1"
max_prompts=0           # >0: a small slice of the corpus (CI)
vocab_size=600          # sentencepiece pieces learned besides the special tokens (not s2t.sh's --nbpe, which
                        # is sentencepiece's whole vocabulary: here 600 + 3 + 9 specials); 600 keeps CTC
                        # targets at ~0.45 tokens per 80 ms frame (300 pieces need ~0.6)
s2t_config=conf/tuning/train_smoe_encdec_tiny.yaml  # training config
init=""                 # starting weights: base (fine-tune --base_model) | scratch (random)
                        # (default: base for --corpus asterisk, scratch for the others)
base_model=pretrained/base_smoe_encdec_tiny.zip  # --init base: an ESPnet packed S2T archive made by this
                        # recipe, described by <archive without .zip>.json (command, data, SHA-256)
s2t_args=""             # extra flags for espnet_smoe.bin.s2t_train, over s2t_config's, e.g. "--max_epoch 5"
s2t_stats_dir=""        # feature statistics and shapes (default: <expdir>/stats_<corpus>_bpe<vocab_size>)
tag=""                  # experiment name: <expdir>/<tag> (default: [<corpus>_]<s2t_config name>, then
                        # s2t_args as s2t.sh's tag has them: "--max_epoch 5" -> _max_epoch5)
s2t_exp=""              # experiment folder (default: <expdir>/<tag>)
inference_config=""     # decoding config (default: conf/decode_asterisk.yaml for --corpus asterisk,
                        # chosen on its dev split; conf/decode.yaml for the others)
inference_args=""       # extra flags for espnet_smoe.bin.s2t_inference, e.g. "--beam_size 2"
inference_s2t_model=valid.acc.ave.pth  # checkpoint to decode, e.g. valid.acc.best.pth, 3epoch.pth
inference_tag=""        # decoding folder in the experiment (default: decode_<inference_config name>,
                        # then inference_args as for the tag, then _<model name>)
test_sets=""            # data dirs to decode (default: the corpus's test sets)
tasks="asr st_fra"      # tasks to decode each test set in

. ./path.sh
. ./cmd.sh
. ./db.sh
. local/parse_options.sh "$@"

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (run.sh:${BASH_LINENO[0]}) $*"; }
die() { echo "$0: $*" >&2; exit 1; }

for _name in stage stop_stage ngpu num_nodes nj inference_nj max_prompts vocab_size; do
    [[ ${!_name} =~ ^[0-9]+$ ]] || die "--${_name} must be a whole number, got '${!_name}'"
done
[ -n "${init}" ] || { [ "${corpus}" = asterisk ] && init=base || init=scratch; }
[[ ${init} =~ ^(base|scratch)$ ]] || die "--init must be base or scratch, got '${init}'"
for _name in skip_data_prep skip_train skip_eval skip_packing gpu_inference; do
    [[ ${!_name} =~ ^(true|false)$ ]] || die "--${_name} must be true or false, got '${!_name}'"
done
[[ ${speed_perturb_factors} =~ ^[0-9.\ ]*$ ]] || die "--speed_perturb_factors must list numbers, got '${speed_perturb_factors}'"
[[ ${skip_stages} =~ ^[0-9\ ]*$ ]] || die "--skip_stages must list stage numbers, got '${skip_stages}'"
skip=" ${skip_stages} "
! ${skip_data_prep} || skip+="1 2 3 4 5 "
! ${skip_train} || skip+="5 10 11 "
! ${skip_eval} || skip+="12 13 "
! ${skip_packing} || skip+="14 "
read -r -a _skipped <<< "${skip}"
skipped=$(printf '%s\n' "${_skipped[@]}" | sort -nu | paste -sd ' ')
run_stage() {  # $1: a stage number; true if it is to run
    [ "$1" -ge "${stage}" ] && [ "$1" -le "${stop_stage}" ] && [[ " ${skipped} " != *" $1 "* ]]
}
_any=false
for _s in 1 2 3 4 5 10 11 12 13 14; do ! run_stage "${_s}" || _any=true; done
${_any} || die "--stage ${stage} --stop_stage ${stop_stage} selects no stage to run (stages: 1-5, 10-14; skipped: ${skipped:-none})"

# Training and dev data are *_mix dirs made by stage 4 (local/combine_data.py): the
# sources below without any dev/test sentence, transcripts in the scored form.
st_corpus=false
case "${corpus}" in
    # Asterisk train + a tts_ui slice; tested on the real Asterisk prompts
    asterisk) train_sources="train tts_ui_train"; dev_source=dev; corpus_tests="test_nb test_wb"
              [ -n "${tts_ui_sizes}" ] || tts_ui_sizes="3000 0 0"
              [ -n "${inference_config}" ] || inference_config=conf/decode_asterisk.yaml ;;
    # tts_ui models are also tested on the real Asterisk prompts
    tts_ui)   train_sources=tts_ui_train; dev_source=tts_ui_dev
              corpus_tests="tts_ui_test_nb tts_ui_test_wb ddtp_test_nb ddtp_test_wb test_nb test_wb"
              [ -n "${tts_ui_sizes}" ] || tts_ui_sizes="20000 1000 1000" ;;
    # MuST-C en-fr / Europarl-ST en->fr (paths in db.sh), cut per utterance by stage 3 (local/st_corpus.py)
    # (no Asterisk stages 1-2, no tts_ui slice: st_corpus=true)
    mustc)    train_sources=mustc_train; dev_source=mustc_dev; corpus_db=${MUSTC}; st_corpus=true
              corpus_tests="mustc_tst_common_nb mustc_tst_common_wb mustc_tst_he_nb mustc_tst_he_wb"
              [ -n "${tts_ui_sizes}" ] || tts_ui_sizes="0 0 0" ;;
    europarl_st) train_sources=europarl_st_train; dev_source=europarl_st_dev; corpus_db=${EUROPARL_ST}
              corpus_tests="europarl_st_test_nb europarl_st_test_wb"; st_corpus=true
              [ -n "${tts_ui_sizes}" ] || tts_ui_sizes="0 0 0" ;;
    *) die "unknown --corpus ${corpus} (asterisk, tts_ui, mustc or europarl_st)" ;;
esac
read -r n_train n_dev n_test <<< "${tts_ui_sizes}"
[ "${n_train}" -gt 0 ] || train_sources=${train_sources/tts_ui_train/}
mix_set=${dev_source/dev/train}_mix; valid_set=${dev_source}_mix
train_set=${mix_set}
[ -z "${speed_perturb_factors}" ] || train_set=${mix_set}_sp
[ -n "${test_sets}" ] || test_sets=${corpus_tests}
[ -n "${inference_config}" ] || inference_config=conf/decode.yaml

# Experiment folder: a folder trained with another config or other s2t_args is never resumed
# (stage 11 stops, local/exp_guard.py); the default tag keeps such runs apart, as s2t.sh's does.
args_tag() { local a=${1//--/_}; echo "${a//[ |=\/]/}"; }  # "--max_epoch 5" -> _max_epoch5
if [ -z "${tag}" ]; then
    if [ -n "${s2t_exp}" ]; then
        tag=$(basename "${s2t_exp}")
    else
        tag=$(basename "${s2t_config}" .yaml)$(args_tag "${s2t_args}")
        [ "${init}" = scratch ] || tag+=_from_base
        [ "${corpus}" = asterisk ] || tag=${corpus}_${tag}
    fi
fi
[ -n "${s2t_exp}" ] || s2t_exp=${expdir}/${tag}
if [ -z "${inference_tag}" ]; then
    inference_tag=decode_$(basename "${inference_config}" .yaml)$(args_tag "${inference_args}")
    inference_tag+=_$(basename "${inference_s2t_model}" .pth)
fi
# --init base: the base's vocabulary and feature normalisation (the weights learned on them),
# unpacked by stage 5; scratch: a sentencepiece model of the training text and its statistics
if [ "${init}" = base ]; then
    base_name=$(basename "${base_model}" .zip)
    token_dir=${expdir}/pretrained/${base_name}
    [ -n "${s2t_stats_dir}" ] || s2t_stats_dir=${expdir}/stats_${corpus}_${base_name}
    norm_stats=${token_dir}/feats_stats.npz
    init_args="--init_param ${token_dir}/model.pth"
else
    token_dir=data/token_list/${corpus}_bpe_unigram${vocab_size}
    [ -n "${s2t_stats_dir}" ] || s2t_stats_dir=${expdir}/stats_${corpus}_bpe${vocab_size}
    norm_stats=${s2t_stats_dir}/train/feats_stats.npz
    init_args=""
fi
decode_dir=${s2t_exp}/${inference_tag}
log "Skipped stages: ${skipped:-none}"

# ESPnet data names: wav.scp->speech, text (prompt + target), text.prev, text.ctc, utt2bw->bandwidth
data_opts() {  # $1: flag, $2: data dir
    local f=$1 d=$2
    echo "--${f} ${d}/wav.scp,speech,sound --${f} ${d}/text,text,text --${f} ${d}/text.prev,text_prev,text" \
         "--${f} ${d}/text.ctc,text_ctc,text --${f} ${d}/utt2bw,bandwidth,text"
}
token_opts="--token_type bpe --bpemodel ${token_dir}/bpe.model --token_list ${token_dir}/tokens.txt"

if run_stage 1 && ! ${st_corpus}; then
    log "Stage 1: fetch the Asterisk prompts (en wav, en g722, en/fr transcripts) and decode G.722"
    python -m local.fetch_asterisk --db "${ASTERISK}" --download_dir downloads --out_dir data/local/asterisk
fi

if run_stage 2 && ! ${st_corpus}; then
    log "Stage 2: 16 kHz audio in both bandwidths (narrowband: ${nb_source}) and utt2bw"
    python -m local.make_bandwidth --inventory data/local/asterisk/prompts.tsv \
        --out_dir data/local/bandwidth --nb_source "${nb_source}"
fi

if run_stage 3; then
    if ${st_corpus}; then
        log "Stage 3: ${corpus} (${corpus_db}) cut into 16 kHz utterances, ${nb_fraction} of train/dev narrowband"
        python -m local.st_corpus --corpus "${corpus}" --db "${corpus_db}" --data_dir data \
            --audio_dir "${dumpdir}/audio" --nb_fraction "${nb_fraction}" --seed "${seed}" \
            --train_config "${s2t_config}" --nj "${nj}"
    else
        log "Stage 3: filter and split by prompt family into data/{train,dev,test_nb,test_wb}"
        python -m local.split_data --inventory data/local/asterisk/prompts.tsv \
            --bandwidth data/local/bandwidth/bandwidth.tsv --data_dir data --local_dir data/local \
            --max_prompts "${max_prompts}"
    fi
fi

if run_stage 4; then
    if [ "${n_train}" -gt 0 ]; then
        log "Stage 4: tts_ui corpus (${tts_ui_sizes}: text pairs, TTS, channel) into data/tts_ui_*"
        python -m local.tts_ui.prepare --out_data data --audio_dir downloads/tts_ui/audio \
            --num_train "${n_train}" --num_dev "${n_dev}" --num_test "${n_test}" --nj "${nj}" --seed "${seed}"
    else
        log "Stage 4: no tts_ui corpus (--tts_ui_sizes ${tts_ui_sizes})"
    fi
    log "Stage 4: data/${mix_set} (${train_sources}) and data/${valid_set}, without any dev/test sentence"
    # shellcheck disable=SC2046
    python -m local.combine_data --out "data/${mix_set}" --sets $(printf 'data/%s ' ${train_sources}) \
        --exclude $(printf 'data/%s ' ${dev_source} ${corpus_tests})
    python -m local.combine_data --out "data/${valid_set}" --sets "data/${dev_source}" \
        --exclude $(printf 'data/%s ' ${corpus_tests})
    if [ -n "${speed_perturb_factors}" ]; then
        log "Stage 4: data/${train_set}: data/${mix_set} at speeds ${speed_perturb_factors}"
        # shellcheck disable=SC2086
        python -m local.speed_perturb --in_dir "data/${mix_set}" --out_dir "data/${train_set}" \
            --factors ${speed_perturb_factors} --audio_dir "${dumpdir}/speed_perturb" --nj "${nj}"
    fi
fi

if run_stage 5; then
    if [ "${init}" = base ]; then
        log "Stage 5: base model ${base_model} (checked against its .json) unpacked into ${token_dir}"
        python -m local.base_model unpack --archive "${base_model}" --out_dir "${token_dir}"
    else
        log "Stage 5: sentencepiece model and token list in ${token_dir}"
        python -m local.make_tokens --train_dir "data/${train_set}" --vocab_size "${vocab_size}" --out_dir "${token_dir}"
    fi
fi

if run_stage 10; then
    log "Stage 10: feature statistics and shapes in ${s2t_stats_dir}"
    # One job, two loader workers whatever --nj: ESPnet's iterable dataset deals the keys to the
    # workers in turn and the loader takes their batches in turn, so the shape files list the
    # utterances in an order set by the number of workers. Fixed, the same data gives the same
    # files on every machine (the runs kept in results/runs/ were trained on these).
    # shellcheck disable=SC2046
    ${train_cmd} "${s2t_stats_dir}/logs/stats.log" python -m espnet_smoe.bin.s2t_train \
        --collect_stats true --config "${s2t_config}" --normalize none --use_preprocessor true ${token_opts} \
        $(data_opts train_data_path_and_name_and_type "data/${train_set}") \
        $(data_opts valid_data_path_and_name_and_type "data/${valid_set}") \
        --train_shape_file "data/${train_set}/wav.scp" --valid_shape_file "data/${valid_set}/wav.scp" \
        --ngpu 0 --num_workers 2 --output_dir "${s2t_stats_dir}"
fi

if run_stage 11; then
    log "Stage 11: train ${s2t_exp} (${s2t_config}; init ${init}; ngpu=${ngpu}, num_nodes=${num_nodes})"
    # a folder trained with another config or other arguments stops the run here
    python -m local.exp_guard --exp_dir "${s2t_exp}" --s2t_config "${s2t_config}" \
        --s2t_args "${init_args} ${s2t_args}" \
        --train_data "data/${train_set}" --valid_data "data/${valid_set}" --token_dir "${token_dir}" \
        --stats_dir "${s2t_stats_dir}"
    dist_opts="--ngpu ${ngpu} --multiprocessing_distributed true"
    if [ "${num_nodes}" -gt 1 ]; then
        # srun starts one task per node, which spawns ngpu workers (ESPnet reads the node rank from Slurm)
        dist_opts+=" --dist_launcher slurm --dist_init_method file://$(cd "${s2t_exp}" && pwd)/.dist_init_$(date +%s)"
    fi
    # shellcheck disable=SC2046,SC2086
    ${cuda_cmd} --gpu "${ngpu}" --num_nodes "${num_nodes}" "${s2t_exp}/train.log" \
        python -m espnet_smoe.bin.s2t_train --config "${s2t_config}" --use_preprocessor true ${token_opts} \
        $(data_opts train_data_path_and_name_and_type "data/${train_set}") \
        $(data_opts valid_data_path_and_name_and_type "data/${valid_set}") \
        --normalize_conf "stats_file=${norm_stats}" ${init_args} \
        --train_shape_file "${s2t_stats_dir}/train/speech_shape" \
        --valid_shape_file "${s2t_stats_dir}/valid/speech_shape" \
        --resume true ${dist_opts} --output_dir "${s2t_exp}" ${s2t_args}
fi

if run_stage 12; then
    log "Stage 12: decode ${test_sets} x ${tasks} with ${inference_s2t_model} (${inference_nj} jobs for all sets)"
    dir=${decode_dir}/jobs
    # each job: its own wav.scp and utt2bw over all test sets, shortest first (batches of similar length)
    _nj=$(python -m local.split_keys --nj "${inference_nj}" --out_dir "${dir}" --sort_by_duration \
              $(for s in ${test_sets}; do echo "--scp data/${s}/wav.scp --extra data/${s}/utt2bw"; done))
    _cmd=${decode_cmd}; _ngpu=0
    if ${gpu_inference}; then _cmd=${cuda_cmd}; _ngpu=1; fi
    # one process per job decodes every set and task (ESPnet and the model load once)
    # shellcheck disable=SC2086
    ${_cmd} --gpu "${_ngpu}" JOB=1:"${_nj}" "${dir}/logs/decode.JOB.log" \
        python -m espnet_smoe.bin.s2t_inference --config "${inference_config}" --ngpu "${_ngpu}" \
        --s2t_train_config "${s2t_exp}/config.yaml" --s2t_model_file "${s2t_exp}/${inference_s2t_model}" \
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

if run_stage 13; then
    log "Stage 13: score (WER for asr, BLEU/chrF for st) -> ${decode_dir}, copied to ${s2t_exp}/{RESULTS.md,results.json}"
    # each decoding keeps its scores; the experiment's copy is the latest one scored (and what stage 14 packs)
    python -m local.score --data_dir data --decode_dir "${decode_dir}" --test_sets "${test_sets}" \
        --tasks "${tasks}" --out_dir "${decode_dir}" --tag "${tag}"
    cp "${decode_dir}/RESULTS.md" "${decode_dir}/results.json" "${s2t_exp}/"
    cat "${s2t_exp}/RESULTS.md"
fi

if run_stage 14; then
    log "Stage 14: pack ${s2t_exp}/packed.zip (and model_info.json: total/active parameters)"
    python -m espnet_smoe.bin.model_info --config "${s2t_exp}/config.yaml" --out "${s2t_exp}/model_info.json"
    python -m espnet2.bin.pack s2t --s2t_train_config "${s2t_exp}/config.yaml" \
        --s2t_model_file "${s2t_exp}/${inference_s2t_model}" --option "${token_dir}/bpe.model" \
        --option "${norm_stats}" --option "${s2t_exp}/RESULTS.md" \
        --outpath "${s2t_exp}/packed.zip"
fi

log "Done: ${s2t_exp}"
