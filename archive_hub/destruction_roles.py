"""Who signs a 销毁清册 and who witnesses its execution (Art. 18), apart from the catalog code so the CLI can
name them in its help without loading the database layer."""

from __future__ import annotations

# Art. 18: the 销毁清册 is signed by these five before anything is destroyed.
SIGNATORIES = {
    "unit-head": "单位负责人",
    "archives-head": "档案管理机构负责人",
    "accounting-head": "会计管理机构负责人",
    "archives-handler": "档案管理机构经办人",
    "accounting-handler": "会计管理机构经办人",
}
# 监销: the archives and the accounting office each send a witness; for e-archives IT takes part too.
WITNESSES = {
    "archives": "档案管理机构监销人",
    "accounting": "会计管理机构监销人",
    "it": "信息系统管理机构监销人",
}


class DestructionRefused(ValueError):
    """A hold, list, signature or execution the rules do not allow; nothing was changed."""
