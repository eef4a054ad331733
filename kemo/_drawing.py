"""Face boxes and emotion labels drawn on video frames, readable at any frame size.

Sizes follow the frame height: label text is about 1/32 of it (34 px at 1080p; 12 px at
least, so that 360p labels stay legible), lines about 1/300. Every label sits on a filled
background (the colour of its face's track, or dark for the video's label), so it reads on any
picture, and a label that would cover one already drawn in the frame moves until it does not.
"""

import dataclasses

import cv2

FONT = cv2.FONT_HERSHEY_SIMPLEX
#: Track colours (RGB): distinct, and light enough for black text.
COLORS = ((0, 230, 0), (255, 170, 0), (0, 200, 255), (255, 90, 200), (255, 255, 0),
          (170, 140, 255), (0, 255, 190), (255, 110, 110))
#: The video's label: white text on near-black.
HEADLINE_COLORS = ((255, 255, 255), (24, 24, 24))
# Height of the font's capitals plus descenders at scale 1, from which the scale follows.
(_, _CAPITALS), _DESCENDERS = cv2.getTextSize("Ag", FONT, 1.0, 1)
_FONT_HEIGHT = _CAPITALS + _DESCENDERS
_TEXT_FRACTION = 1 / 32  # text height over frame height
_TEXT_MIN = 12  # pixels: smaller text cannot be read
_LINE_FRACTION = 1 / 300  # box line width over frame height


@dataclasses.dataclass(frozen=True)
class Style:
    """Sizes of the marks drawn on frames of one height.

    Attributes:
        scale: OpenCV font scale.
        thickness: stroke of the text, in pixels.
        line: stroke of the boxes, in pixels.
        pad: space between a label's text and the edge of its background, in pixels.
    """

    scale: float
    thickness: int
    line: int
    pad: int


def style_for(height):
    """The :class:`Style` for frames ``height`` pixels high."""
    text = max(height * _TEXT_FRACTION, _TEXT_MIN)
    scale = text / _FONT_HEIGHT
    return Style(scale=scale, thickness=max(1, round(scale * 1.6)),
                 line=max(1, round(height * _LINE_FRACTION)), pad=max(2, round(text * 0.25)))


def label_size(text, style):
    """``(width, height)`` of a label's filled background, in pixels."""
    (width, height), baseline = cv2.getTextSize(text, FONT, style.scale, style.thickness)
    return width + 2 * style.pad, height + baseline + 2 * style.pad


def draw_frame(image, faces, headline, style):
    """Draw each face's box and label, and the video's label, on ``image`` in place.

    Args:
        image: RGB uint8 frame ``(H, W, 3)``, written into.
        faces: ``(track id, [x, y, w, h], text)`` of each face in the frame.
        headline: the video's label, drawn in the top-left corner (None: none).
        style: sizes, from :func:`style_for`.

    Returns:
        list: the rectangles ``(x0, y0, x1, y1)`` of the labels drawn, headline first.
    """
    taken = []
    if headline:
        taken.append(_label(image, headline, (0, 0), HEADLINE_COLORS, style, taken))
    for track, (x, y, w, h), _ in faces:
        top_left, bottom_right = (int(x), int(y)), (int(x + w), int(y + h))
        cv2.rectangle(image, top_left, bottom_right, _color(track), style.line, cv2.LINE_AA)
    for track, (x, y, _, h), text in faces:
        width, height = label_size(text, style)
        gap = style.line
        # above the box, below it, or inside its top edge: the first place that is free
        spots = [(x - gap, y - gap - height), (x - gap, y + h + gap), (x + gap, y + gap)]
        spots = [_inside(image, sx, sy, width, height) for sx, sy in spots]
        free = [s for s in spots if not _overlaps((*s, s[0] + width, s[1] + height), taken)]
        spot = free[0] if free else _below_others(image, spots[0], width, height, taken)
        taken.append(_label(image, text, spot, ((0, 0, 0), _color(track)), style, taken))
    return taken


def _color(track):
    return COLORS[int(track) % len(COLORS)]


def _label(image, text, spot, colors, style, taken):
    """Draw ``text`` on a filled rectangle whose top-left corner is ``spot``; return the box."""
    width, height = label_size(text, style)
    x, y = _inside(image, *spot, width, height)
    ink, fill = colors
    cv2.rectangle(image, (x, y), (x + width - 1, y + height - 1), fill, cv2.FILLED)
    _, baseline = cv2.getTextSize(text, FONT, style.scale, style.thickness)
    cv2.putText(image, text, (x + style.pad, y + height - style.pad - baseline), FONT,
                style.scale, ink, style.thickness, cv2.LINE_AA)
    return x, y, x + width, y + height


def _inside(image, x, y, width, height):
    """The top-left corner moved so that a ``width`` x ``height`` label stays in the frame."""
    rows, cols = image.shape[:2]
    return (int(min(max(x, 0), max(cols - width, 0))),
            int(min(max(y, 0), max(rows - height, 0))))


def _overlaps(rect, taken):
    x0, y0, x1, y1 = rect
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in taken)


def _below_others(image, spot, width, height, taken):
    """Move a label down past every label it covers (the faces are crowded)."""
    x, y = spot
    for _ in range(len(taken) + 1):
        covered = [b for b in taken if _overlaps((x, y, x + width, y + height), [b])]
        if not covered:
            break
        x, y = _inside(image, x, max(b[3] for b in covered), width, height)
    return x, y
