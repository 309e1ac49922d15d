# shellcheck shell=bash
# Job launchers used by run.sh, Kaldi style:
#
#   ${decode_cmd} JOB=1:${nj} ${dir}/log/decode.JOB.log python -m ... --key_file ${dir}/keys.JOB.scp
#   ${train_cmd} --gpu ${ngpu} ${dir}/log/train.log python -m ...
#
# Launcher options (before JOB=/the log): --gpu N, --num_nodes N, --mem X,
# --time T, --max_jobs_run N. JOB in the log path and in the command is
# replaced by the job index. See local/launch.py for the details.
#
# cmd_backend selects where jobs run:
#   local: on this machine, all jobs of an array in parallel (add
#          --max_jobs_run N to the command variable to cap them).
#   slurm: submitit submits each command (an array for JOB=a:b) and waits;
#          sbatch options from conf/slurm.conf, in ESPnet's format (its
#          "command sbatch ...", "option gpu=* ..." lines; an ESPnet
#          recipe's slurm.conf works as it is); --num_nodes N runs one task
#          per node under srun, for ESPnet's --dist_launcher slurm.
# Both can be overridden from the environment:
#   cmd_backend=slurm slurm_conf=/path/to/slurm.conf ./run.sh ...

cmd_backend=${cmd_backend:-local}
slurm_conf=${slurm_conf:-conf/slurm.conf}

case "${cmd_backend}" in
    local)
        _launch="python -m local.launch --backend local"
        ;;
    slurm)
        _launch="python -m local.launch --backend slurm --config ${slurm_conf}"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (expected local or slurm)" >&2
        return 1 2>/dev/null || exit 1
        ;;
esac

# Training and other single jobs.
export train_cmd="${_launch}"
# Jobs that need GPUs (pass --gpu N).
export cuda_cmd="${_launch}"
# Decoding arrays (JOB=1:nj).
export decode_cmd="${_launch}"
unset _launch
