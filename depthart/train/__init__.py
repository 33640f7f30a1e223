"""Training: the DepthART objective, the VAR teacher-forcing baseline, the trainer and the VQ-VAE trainer.

    losses.py        refine_loop (the model's own cached loop with dynamic targets), depthart_loss,
                     teacher_forcing_loss
    vqvae_train.py   the VQ-VAE objective (reconstruction + VAR-style codebook/commitment, dead codes)
    trainer.py       TrainConfig, Trainer (AdamW, StepLR, clipping, EMA, checkpoints, exact resume)
    data.py          `--data` specs (synthetic, hypersim:PATH) -> depth datasets
    cli.py           `depthart train`, `depthart train-vqvae`

Importing `depthart.train` imports nothing heavy; the submodules import torch.
"""
