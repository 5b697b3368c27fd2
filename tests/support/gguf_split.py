"""Write a GGUF as a split model (llama.cpp's PREFIX-0000i-of-0000N.gguf) with the gguf package,
so tests can serve a real split model without llama.cpp's gguf-split tool."""

from __future__ import annotations

from pathlib import Path

import gguf


def split_gguf(src: Path, out_dir: Path, stem: str, parts: int) -> list[Path]:
    """``src`` rewritten as ``parts`` files in ``out_dir``; returns them, first first."""
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    per_part = -(-len(reader.tensors) // parts)
    writer = gguf.GGUFWriter(out_dir / f"{stem}.gguf", arch, split_max_tensors=per_part)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # the writer sets these itself
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data)
    writer.close()
    return [out_dir / f"{stem}-{i:05d}-of-{parts:05d}.gguf" for i in range(1, parts + 1)]
