"""Probe: PT2E quantization-aware training of the exact ExecuTorch int8-static graph vs post-training, on a bench student.

The student's fixed-length program is exported, prepared with the XNNPACK quantizer (static, per channel; the
exporter's min/max ranges for the post-training q/dq graph, PT2E's QAT config for the trained one), calibrated on the
exporters' 256 texts, then trained (self-distillation to the fp32 logits, T = 2, AdamW, linear decay, batch 32 at
the profile's length) on up to 16,000 training texts. Prints each converted q/dq graph's argmax agreement with the
fp32 student on the whole dev set (the q/dq graph run in PyTorch agreed with the lowered .pte within 0.1 point).

    python bench/pt2e_qat_probe.py out/bench-distill/sst2/0.25/prune/student sst2 EPOCHS LR_SCALE
"""
import sys, copy, random, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1])); sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np, torch, torch.nn.functional as F
from toolkit.student import load_student, FixedLengthClassifier, encode_for, calibration_inputs
from toolkit.tokenizer import XLNetTextEncoder
import distill as bench
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e, convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
from toolkit.export_pte import _with_min_max_activations

folder, task, epochs, lr = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
torch.manual_seed(0)
_, train, dev, _ = bench.task_data(task)
student = load_student(folder).eval(); enc = XLNetTextEncoder.from_pretrained(folder)
module = FixedLengthClassifier(student)
B = 32
def batches(arrays):
    n = len(arrays[0]); pad = (-n) % B
    arrays = [np.concatenate([a, np.repeat(a[-1:], pad, 0)]) for a in arrays]
    for s in range(0, n + pad, B):
        yield tuple(torch.from_numpy(np.ascontiguousarray(a[s:s+B])) for a in arrays)
def run(m, arrays):
    out = []
    with torch.no_grad():
        for b in batches(arrays): out.append(m(*b))
    return torch.cat(out)[: len(arrays[0])]
dev_in = encode_for(student, enc, dev)
ref = run(module, dev_in); ref_arg = ref.argmax(1)
agree = lambda m: float((run(m, dev_in).argmax(1) == ref_arg).float().mean())
cal = calibration_inputs(student, enc, train, 0)
example = next(batches(cal))
exported = torch.export.export(module, example).module()
# PTQ exactly as the exporter (min/max, static, per-channel), as a q/dq graph
q = XNNPACKQuantizer().set_global(_with_min_max_activations(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)))
ptq = prepare_pt2e(copy.deepcopy(exported), q)
with torch.no_grad():
    for b in batches(cal): ptq(*b)
ptq = convert_pt2e(ptq); print("PTQ q/dq agreement", agree(ptq), flush=True)
# QAT
qq = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False, is_qat=True))
qat = prepare_qat_pt2e(copy.deepcopy(exported), qq)
with torch.no_grad():
    for b in batches(cal): qat(*b)
c = convert_pt2e(copy.deepcopy(qat)); move_exported_model_to_eval(c); print("QAT start (moving-avg ranges) agreement", agree(c), flush=True)
texts = train.texts
if len(texts) > 16000: texts = random.Random(0).sample(list(texts), 16000)
from toolkit.data import unlabelled
data = unlabelled(list(texts), train.label_names, "qat")
tr_in = encode_for(student, enc, data); tr_ref = run(module, tr_in)
opt = torch.optim.AdamW(qat.parameters(), lr=3e-4 * lr, weight_decay=0.01)
steps = epochs * (len(tr_in[0]) // B); sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
t0 = time.time()
for ep in range(epochs):
    move_exported_model_to_train(qat)
    order = np.random.default_rng(ep).permutation(len(tr_in[0]))
    for s in range(0, len(order) - B + 1, B):
        idx = order[s:s+B]
        b = tuple(torch.from_numpy(np.ascontiguousarray(a[idx])) for a in tr_in)
        out = qat(*b); T = 2.0
        loss = F.kl_div(F.log_softmax(out / T, -1), F.log_softmax(tr_ref[idx] / T, -1), reduction="batchmean", log_target=True) * T * T
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(qat.parameters(), 1.0); opt.step(); sched.step()
    c = convert_pt2e(copy.deepcopy(qat)); move_exported_model_to_eval(c)
    print(f"epoch {ep+1}: QAT q/dq agreement {agree(c):.4f} ({time.time()-t0:.0f}s)", flush=True)
