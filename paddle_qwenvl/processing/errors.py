"""Errors raised for bad multimodal input. All are ValueErrors, so callers may catch broadly."""


class InputError(ValueError):
    """Base class: the request's input cannot be processed as given."""


class UnsupportedSourceError(InputError):
    """An image/video source of a kind or URL scheme we do not read."""


class SourceFetchError(InputError):
    """A source could not be read: missing file, download failure, too many bytes."""


class ImageLoadError(InputError):
    """The bytes are not an image, or the image is truncated/corrupt."""


class ImageTooLargeError(InputError):
    """The image has more pixels than max_input_pixels (decompression-bomb guard)."""


class AspectRatioError(InputError):
    """The image is more than 200 times longer than wide (or the reverse)."""


class VideoDecodeError(InputError):
    """The video cannot be opened or has too few decodable frames."""


class PlaceholderMismatchError(InputError):
    """The number of images/videos differs from the number of placeholders in the prompt."""
