"""The Ollama and OpenAI paths the gateway serves, and what kind of request each is."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_gateway.vocabulary import Kind


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    path: str
    methods: tuple[str, ...]
    # The `endpoint` label of metrics and logs.
    endpoint: str
    # Cacheable generation/embedding kinds; None for plain pass-through.
    kind: Kind | None = None
    # POST routes whose JSON body must name a model.
    needs_model: bool = False
    # `/v1/models/{model}`: the path names a model (checked, and re-encoded); the
    # path before the parameter. Derived from `path`, once.
    model_in_path: bool = field(init=False)
    path_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_in_path", self.path.endswith("{model:path}"))
        object.__setattr__(self, "path_prefix", self.path.split("{", 1)[0])

    @property
    def openai(self) -> bool:
        return self.path.startswith("/v1/")


PROXY_ROUTES: tuple[ProxyRoute, ...] = (
    ProxyRoute("/api/generate", ("POST",), "generate", Kind.GENERATE, True),
    ProxyRoute("/api/chat", ("POST",), "chat", Kind.CHAT, True),
    ProxyRoute("/api/embed", ("POST",), "embed", Kind.EMBED, True),
    ProxyRoute("/api/embeddings", ("POST",), "embeddings", Kind.EMBEDDINGS, True),
    ProxyRoute("/api/show", ("POST",), "show", None, True),
    ProxyRoute("/api/tags", ("GET",), "tags"),
    ProxyRoute("/api/ps", ("GET",), "ps"),
    ProxyRoute("/api/version", ("GET",), "version"),
    ProxyRoute("/", ("GET", "HEAD"), "root"),
    ProxyRoute("/v1/chat/completions", ("POST",), "openai_chat", Kind.OPENAI_CHAT, True),
    ProxyRoute("/v1/completions", ("POST",), "openai_completions", Kind.OPENAI_COMPLETIONS, True),
    ProxyRoute("/v1/embeddings", ("POST",), "openai_embeddings", Kind.OPENAI_EMBEDDINGS, True),
    ProxyRoute("/v1/models", ("GET",), "openai_models"),
    ProxyRoute("/v1/models/{model:path}", ("GET",), "openai_models"),
)
