"""Does a run's saved adapter, loaded on one device, give the eval loss the (maybe sharded) run reported?

python -m benchmarks.reload_check RUN_DIR     (prints one JSON line)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from peft import PeftModel
from trl import SFTTrainer

from climate_sft.config import load_recipe
from climate_sft.corpus import load_corpus
from climate_sft.modeling import load_model, load_tokenizer


def main() -> None:
    run = Path(sys.argv[1])
    recipe = load_recipe(run / "recipe.yaml", ["--output_dir", str(run / "reload"), "--report_to", "none"])
    recorded = json.loads((run / "training_stats.json").read_text())["eval_losses"][-1]["eval_loss"]
    corpus = load_corpus(recipe.data.corpus_dir)
    trainer = SFTTrainer(  # the adapter is already on the model: no peft_config
        model=PeftModel.from_pretrained(load_model(recipe.model), str(run)),
        args=recipe.training,
        train_dataset=corpus["train"].select_columns(["text"]),  # TRL 1.16 requires one; nothing trains
        eval_dataset=corpus[recipe.data.eval_split].select_columns(["text"]),
        processing_class=load_tokenizer(recipe.model),
    )
    reloaded = trainer.evaluate()["eval_loss"]
    print(
        json.dumps(
            {
                "run": run.name,
                "recorded_eval_loss": recorded,
                "reloaded_eval_loss": reloaded,
                "relative_difference": abs(reloaded - recorded) / recorded,
            }
        )
    )


if __name__ == "__main__":
    main()
