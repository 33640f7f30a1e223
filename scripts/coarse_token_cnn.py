"""Can the coarse depth tokens (scales 1x1, 2x2, 4x4) be predicted from the image at all?

    python scripts/coarse_token_cnn.py SCENES_FOLDER LATENT_CACHE.pt [MINUTES] [THREADS]

A small CNN classifier (4 conv levels, 24-192 channels, one 512-way head per scale) trained on a
rendered scene set (`depthart render-data`) against the shipped VQ-VAE's tokens of each scene's
depth (from the trainer's latent cache, `--cache-latents`), scored on 300 held-out scenes.
docs/experiments.md section 5.
"""
import time, sys, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
import depthart
from depthart.data import HELD_OUT_SEED_OFFSET, generate_scene
from depthart.data.transforms import depth_target
from depthart.preprocess import to_model_input
from PIL import Image
FOLDER, CACHE = sys.argv[1], sys.argv[2]
MIN = float(sys.argv[3]) if len(sys.argv) > 3 else 10
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 2); torch.manual_seed(0)
m = depthart.load().eval(); q = m.vae.quantize
d = torch.load(CACHE, weights_only=True)
with torch.no_grad():
    toks = [torch.cat(t) for t in zip(*[q.tokenize(d['f_D'][i:i + 1000].float())[0][:3] for i in range(0, len(d['f_D']), 1000)])]
rgb = np.load(f'{FOLDER}/rgb.npy', mmap_mode='r')
print(rgb.shape, rgb.dtype, [t.shape for t in toks], flush=True)
sc = [generate_scene(HELD_OUT_SEED_OFFSET + i, 64) for i in range(300)]
ti = torch.from_numpy(np.stack([to_model_input(Image.fromarray(s.rgb), 64) for s in sc]))
tt = torch.from_numpy(np.stack([depth_target(s.depth, s.valid, 64)[0] for s in sc]))
with torch.no_grad():
    tk = q.tokenize(m.vae.encode(tt))[0][:3]
def blk(i, o): return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())
class Net(nn.Module):
    def __init__(s):
        super().__init__()
        s.b = nn.ModuleList([blk(3, 24), blk(24, 48), blk(48, 96), blk(96, 192)])  # 64,32,16,8
        s.h = nn.Conv2d(192, 512, 1)
    def forward(s, x):
        for i, b in enumerate(s.b):
            x = b(x)
            if i < 3: x = F.max_pool2d(x, 2)
        return [s.h(F.adaptive_avg_pool2d(x, p)).flatten(2).transpose(1, 2) for p in (1, 2, 4)]
net = Net(); opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
def imgs(ix):
    a = torch.from_numpy(np.ascontiguousarray(rgb[ix])).float()
    if a.shape[-1] == 3: a = a.permute(0, 3, 1, 2)
    return a / 127.5 - 1
def evaluate():
    net.eval()
    with torch.no_grad():
        out = net(ti)
    net.train()
    return [float((o.argmax(-1) == t).float().mean()) for o, t in zip(out, tk)]
t0, step = time.time(), 0; nxt = 60
while time.time() - t0 < MIN * 60:
    ix = np.sort(np.random.randint(0, len(rgb), 32))
    out = net(imgs(ix))
    loss = sum(F.cross_entropy(o.transpose(1, 2), t[ix]) for o, t in zip(out, toks))
    opt.zero_grad(); loss.backward(); opt.step(); step += 1
    if time.time() - t0 > nxt:
        nxt += 120
        print(f"{(time.time() - t0) / 60:.1f} min step {step} loss {loss.item():.3f} held-out acc (1,2,4): " + " ".join(f"{a:.2f}" for a in evaluate()), flush=True)
print("final held-out acc (1,2,4):", " ".join(f"{a:.2f}" for a in evaluate()), "steps", step)
