"""polycrowd.models"""
