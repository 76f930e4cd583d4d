"""``python -m tripletclip.cli ...`` (what torchrun runs: ``torchrun --nproc_per_node N -m tripletclip.cli train ...``)."""
from tripletclip.cli import main

main()
