"""polycrowd.bot"""
