"""The Qwen2.5-7B LoRA config the launch tests run (its model is in the built-in catalog)."""

CONFIG = """\
model_name_or_path: Qwen/Qwen2.5-7B-Instruct
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 16
lora_alpha: 32
lora_target: all
dataset: alpaca_en_demo
template: qwen
cutoff_len: 1024
output_dir: saves/q
per_device_train_batch_size: 4
gradient_accumulation_steps: 4
learning_rate: 1.0e-4
num_train_epochs: 1.0
bf16: true
"""
