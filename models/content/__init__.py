from models.content.encoder import TextEncoder, default_model_path
from models.content.model import ContentConfig, ContentEngine, item_texts

__all__ = ["ContentConfig", "ContentEngine", "TextEncoder", "default_model_path", "item_texts"]
