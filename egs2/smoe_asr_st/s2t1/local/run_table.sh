#!/usr/bin/env bash
# The paper's comparison table with fair baselines: every variant trained for
# every seed with the same data, dimensions and steps through run.sh, decoded on the
# corpus's test sets (tts_ui: tts_ui, DDTP and the real Asterisk prompts; NB and WB),
# scored, and tabulated (mean and spread over seeds, parameters, relative step time).
# Run from egs2/smoe_asr_st/s2t1:
#
#   local/run_table.sh                          # tts_ui, 6 variants x seeds 1 2 3, tiny CPU configs
#   local/run_table.sh --corpus asterisk --variants "hard_sharing smoe_encdec" --seeds 1 \
#       --run_args "--max_prompts 24" --s2t_args "--max_epoch 1" --inference_args "--beam_size 2"
#   local/run_table.sh --config_dir conf --config_suffix "" --ngpu 1 --name tts_ui_gpu --publish true
#
# Stages:
#   1: data, tokens and feature stats once: run.sh stages 1-10 (first variant's config; the
#      variants share data, tokens and feature settings, so they share them)
#   2: per seed, per variant: run.sh stages 11-14 (--init scratch: the table compares trainings
#      from random weights) with --tag [<corpus>_]<variant><tag_suffix>_seed<seed>
#      and --s2t_args "<s2t_args> --seed <seed>" -> exp/[<corpus>_]<variant><tag_suffix>_seed<seed>
#      (a run whose results.json exists is skipped unless --skip_done false; a stopped one
#      resumes from its checkpoint, if its options are the same: run.sh stops a run whose
#      folder was trained with others), --parallel_runs of them at a time; output of each
#      run.sh call in exp/table_<name>/logs/. With --keep true each finished run's scores,
#      hypotheses and training statistics go to results/runs/<tag> (small
#      text, to commit), and a run missing from exp/ is restored from there instead of
#      trained again, so the table can be finished on another machine (maint/keep_run.py)
#   3: local/make_table.py -> exp/table_<name>/table.{md,json,png}; --publish true also
#      writes the RESULTS.md section (between <!-- table:table_<name> begin/end -->) and
#      results/table_<name>.{json,png}; --also_against "dense_wide gated_moe" adds every variant's
#      relative WER and paired bootstrap against those baselines too
# --run_args is added to every run.sh call (word-split like a shell line, quotes kept):
#   --run_args "--max_prompts 24 --tts_ui_sizes '60 10 10'"
set -euo pipefail

stage=1                 # first driver stage (1 data, 2 runs, 3 table)
stop_stage=3            # last driver stage
corpus=tts_ui           # run.sh --corpus: asterisk | tts_ui
variants="hard_sharing smoe_enc smoe_dec smoe_encdec dense_wide gated_moe"
                        # the table's rows, in order (baseline of the relative columns: hard_sharing, else the first)
seeds="1 2 3"           # training seeds (ESPnet --seed); the corpus seed stays run.sh's --seed
config_dir=conf/tuning  # configs are <config_dir>/train_<variant><config_suffix>.yaml
config_suffix=_tiny     # "" for the GPU-sized conf/train_<variant>.yaml (with --config_dir conf)
run_args=""             # more run.sh options for every call, e.g. "--max_prompts 24"
s2t_args=""             # ESPnet training flags for every run, e.g. "--max_epoch 2" (run.sh --s2t_args)
inference_args=""       # ESPnet inference flags for every run, e.g. "--beam_size 2"
ngpu=0                  # run.sh --ngpu
nj=2                    # run.sh --nj (data preparation jobs)
inference_nj=2          # run.sh --inference_nj (decoding jobs of each run)
parallel_runs=1         # runs trained side by side, each with OMP_NUM_THREADS=nproc/parallel_runs
                        # (on a 2-core CPU two 1-thread runs train more steps per hour than one 2-thread run)
name=""                 # table name: exp/table_<name> (default: the corpus)
spread=std              # spread shown in table.md: std (sample std) | range (min-max)
skip_done=true          # skip runs that already have results.json
keep=true               # keep finished runs in results/runs/ and restore them from there
keep_going=true         # on a failed run, go on with the others (the driver still fails at the end)
publish=false           # also write RESULTS.md's section and results/table_<name>.{json,png}
note=""                 # a line for the table's header, e.g. "CPU-sized: 1 seed, 4 epochs"
also_against=""         # more baselines for stage 3: every variant's relative WER and paired bootstrap
                        # against each, e.g. the fair baselines "dense_wide gated_moe"
tag_suffix=""           # added to each run's name, so tables of other budgets keep their own runs:
                        # _conv -> exp/tts_ui_hard_sharing_conv_seed1

# The exact command, for the table's header (each argument quoted only when needed).
quote() {
    local out="" a
    for a in "$@"; do
        if [[ "${a}" =~ ^[A-Za-z0-9_./:=,+-]+$ ]]; then out+=" ${a}"
        else out+=" '${a//\'/\'\\\'\'}'"; fi
    done
    echo "${out# }"
}
CMD_LINE=$(quote "$0" "$@")  # before parse_options.sh shifts the arguments away

. ./path.sh
. local/parse_options.sh "$@"

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (run_table.sh:${BASH_LINENO[0]}) $*"; }

[ -n "${name}" ] || name=${corpus}
declare table_dir=exp/table_${name}   # (declare: not an option in --help)
declare keep_dir=results/runs   # kept runs, named like their exp/ folders
declare prefix=""
[ "${corpus}" = asterisk ] || prefix="${corpus}_"   # run names of other corpora start with it
eval "extra=(${run_args})"   # --run_args as shell words
read -r -a variant_list <<< "${variants}"
read -r -a seed_list <<< "${seeds}"
[ ${#variant_list[@]} -gt 0 ] && [ ${#seed_list[@]} -gt 0 ] || { echo "$0: no --variants or --seeds" >&2; exit 1; }
for v in "${variant_list[@]}"; do
    config=${config_dir}/train_${v}${config_suffix}.yaml
    [ -f "${config}" ] || { echo "$0: no config ${config} for variant ${v}" >&2; exit 1; }
done
mkdir -p "${table_dir}/logs"

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "Stage 1: data, tokens and stats for ${corpus} (run.sh stages 1-10)"
    ./run.sh "${extra[@]}" --stage 1 --stop_stage 10 --corpus "${corpus}" --init scratch --ngpu "${ngpu}" --nj "${nj}" \
        --s2t_config "${config_dir}/train_${variant_list[0]}${config_suffix}.yaml" \
        2>&1 | tee "${table_dir}/logs/data.log"
fi

# One run: run.sh stages 11-14; a failure leaves <tag>.failed next to the run's log.
run_one() {  # <variant> <seed> <tag>
    local v=$1 seed=$2 tag=$3 start
    start=$(date +%s)
    rm -f "${table_dir}/logs/${tag}.failed"
    if ./run.sh "${extra[@]}" --stage 11 --stop_stage 14 --corpus "${corpus}" --init scratch --ngpu "${ngpu}" \
            --nj "${nj}" --inference_nj "${inference_nj}" --s2t_config "${config_dir}/train_${v}${config_suffix}.yaml" \
            --tag "${tag}" --s2t_args "${s2t_args} --seed ${seed}" --inference_args "${inference_args}" \
            > "${table_dir}/logs/${tag}.log" 2>&1; then
        log "Stage 2: ${tag} done in $(( $(date +%s) - start )) s"
        if [ "${keep}" = true ]; then
            python -m maint.keep_run save "exp/${tag}" "${keep_dir}/${tag}" || touch "${table_dir}/logs/${tag}.failed"
        fi
    else
        log "Stage 2: ${tag} FAILED; last lines of ${table_dir}/logs/${tag}.log:"
        tail -n 30 "${table_dir}/logs/${tag}.log" >&2
        touch "${table_dir}/logs/${tag}.failed"
    fi
}

declare -a failed=() started=()
if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    [ "${parallel_runs}" -ge 1 ] || { echo "$0: --parallel_runs must be >= 1" >&2; exit 1; }
    if [ "${parallel_runs}" -gt 1 ]; then  # share the cores (path.sh and the launcher keep a set OMP_NUM_THREADS)
        threads=$(( $(nproc) / parallel_runs ))
        export OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
    fi
    for seed in "${seed_list[@]}"; do
        for v in "${variant_list[@]}"; do
            tag=${prefix}${v}${tag_suffix}_seed${seed}   # run.sh's exp/<tag>; a rerun with other options stops
            if [ "${keep}" = true ] && [ -d "${keep_dir}/${tag}" ] && [ ! -f "exp/${tag}/results.json" ]; then
                log "Stage 2: ${tag}: restored from ${keep_dir}/${tag}"
                python -m maint.keep_run restore "${keep_dir}/${tag}" "exp/${tag}"
            fi
            if [ "${skip_done}" = true ] && [ -f "exp/${tag}/results.json" ]; then
                log "Stage 2: exp/${tag}/results.json exists; skipped"
                if [ "${keep}" = true ] && [ ! -d "${keep_dir}/${tag}" ]; then  # finished before it was kept
                    python -m maint.keep_run save "exp/${tag}" "${keep_dir}/${tag}"
                fi
                continue
            fi
            while [ "$(jobs -rp | wc -l)" -ge "${parallel_runs}" ]; do wait -n || true; done
            if [ "${keep_going}" != true ]; then  # only this call's runs: older markers do not count
                for done_tag in "${started[@]}"; do
                    [ ! -f "${table_dir}/logs/${done_tag}.failed" ] || break 3
                done
            fi
            log "Stage 2: ${tag}: train, decode, score, pack (run.sh stages 11-14) -> exp/${tag}, OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset (all cores)}"
            run_one "${v}" "${seed}" "${tag}" &
            started+=("${tag}")
        done
    done
    wait
    for tag in "${started[@]}"; do
        [ ! -f "${table_dir}/logs/${tag}.failed" ] || failed+=("${tag}")
    done
    [ ${#failed[@]} -eq 0 ] || [ "${keep_going}" = true ] || { log "failed runs: ${failed[*]}"; exit 1; }
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    log "Stage 3: table -> ${table_dir}/table.{md,json,png}"
    table_opts=()
    if [ "${publish}" = true ]; then
        table_opts=(--publish_md RESULTS.md --publish_json "results/table_${name}.json"
                      --publish_png "results/table_${name}.png" --section "table_${name}")
    fi
    [ -z "${also_against}" ] || table_opts+=(--also_against "${also_against}")
    python -m local.make_table --exp_template "exp/${prefix}{variant}${tag_suffix}_seed{seed}" \
        --variants "${variants}" --seeds "${seeds}" --spread "${spread}" --out_dir "${table_dir}" \
        --title "S-MoE vs baselines: ${corpus}, train_*${config_suffix}.yaml, seeds ${seeds}" \
        --command "${CMD_LINE}" --note "${note}" "${table_opts[@]}"
fi

if [ ${#failed[@]} -gt 0 ]; then
    log "failed runs: ${failed[*]} (logs in ${table_dir}/logs)"
    exit 1
fi
log "Done: ${table_dir}"
