"""polycrowd.engine"""
