"""witness"""
