"""polycrowd.handlers"""
