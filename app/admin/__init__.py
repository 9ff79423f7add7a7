from app.admin import routes

__all__ = ["routes"]
