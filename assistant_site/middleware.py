from compression_middleware.middleware import CompressionMiddleware as _CompressionMiddleware


class CompressionMiddleware(_CompressionMiddleware):
    """zstd, brotli or gzip (the client's pick) for responses of 500 bytes and more.

    Async streaming responses pass untouched: the library compresses streams with a sync iterator.
    Under ASGI it compresses on the event loop rather than in a thread: the work is CPU-bound either
    way (it holds the GIL), and the hop to a thread and back cost more than compressing an API answer.
    """

    async def __acall__(self, request):
        response = await self.get_response(request)
        return self.process_response(request, response)

    def process_response(self, request, response):
        if getattr(response, "is_async", False):
            return response
        return super().process_response(request, response)
