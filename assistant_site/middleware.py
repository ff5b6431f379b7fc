from compression_middleware.middleware import CompressionMiddleware as _CompressionMiddleware


class CompressionMiddleware(_CompressionMiddleware):
    """zstd, brotli or gzip (the client's pick) for responses of 500 bytes and more.

    Async streaming responses pass untouched: the library compresses streams with a sync iterator.
    """

    def process_response(self, request, response):
        if getattr(response, "is_async", False):
            return response
        return super().process_response(request, response)
