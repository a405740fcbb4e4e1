"""The officers' web screens: layout, templates, translations, static files.

:mod:`aggregator.web.templating` renders pages in the shared layout,
:mod:`aggregator.web.i18n` holds the Vietnamese and English texts,
:mod:`aggregator.web.errors` shapes refusals (pages vs JSON). The routes
live in :mod:`aggregator.api.routes`.
"""
