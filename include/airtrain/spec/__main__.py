"""``python -m airtrain.spec``: print the key table of docs/SPEC.md ("Every key"), generated from the models."""

from airtrain.spec.reference import spec_reference

for key, typ, default, desc in spec_reference():
    print(f"| `{key}` | {typ.replace('|', '&#124;')} | {default.replace('|', '&#124;')} | {desc} |")
