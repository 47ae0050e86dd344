#!/usr/bin/env python3
"""Loads a `tp7 finetune` model.safetensors into torchvision's VGG16 the way a PyTorch user would
(replace classifier[6] by a Linear of the file's width, then load_state_dict(strict=True)) and prints,
as one JSON line, the class names from its metadata and the logits of each image (eval mode, the
same preprocessing as make_reference.py: PIL bilinear resize to --size, ToTensor, ImageNet Normalize).

    load_finetuned.py --model out/finetune/model.safetensors --images a.png b.jpg [--size 224]
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tp7_args  # noqa: E402
import tp7_safetensors as st  # noqa: E402

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def main(argv=None):
    parser = tp7_args.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", nargs="+", required=True)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    import torch
    import torchvision
    import torchvision.transforms as T
    from PIL import Image
    try:
        f = st.SafetensorsFile(args.model)
    except (OSError, st.SafetensorsError) as e:
        print(f"error: {args.model}: {e}", file=sys.stderr)
        return 1
    with f:
        rows = f.shape("classifier.6.weight")[0]
        model = torchvision.models.vgg16()
        model.classifier[6] = torch.nn.Linear(4096, rows)
        model.load_state_dict({k: f.to_torch(k) for k in f.keys()}, strict=True)
        classes = json.loads(f.metadata["classes"]) if "classes" in f.metadata else None
    model.eval()
    tf = T.Compose([T.ToTensor(), T.Normalize(mean=MEAN, std=STD)])
    x = torch.stack([tf(Image.open(p).convert("RGB").resize((args.size, args.size), Image.BILINEAR)) for p in args.images])
    with torch.no_grad():
        logits = model(x)
    print(json.dumps({"classes": classes, "rows": rows, "logits": logits.tolist()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
