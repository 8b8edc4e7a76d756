"""Where the engine runs: the torch device and CPU threads (``devices``), the ranks of a
distributed run over mpi4py and torch.distributed (``distributed``), the compute profiles a user
defines — this process, mpirun here, a host over ssh, a Slurm cluster (``profiles``) — the
launcher that starts a job on a profile's target and follows it to the end (``launcher``), and
how a job's input files reach the target: read over the network, mapped onto its shared storage
or uploaded once into its input cache (``inputs``). It imports only the foundation modules
(errors, wording, progress, jobs): it runs a command, never a model family, and reads no
pixels."""
