"""wikiqa"""
